package platformtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/transferd/transferd/ingest/platform"
)

type errorReply struct {
	Message string `json:"message"`
}

// route answers one authenticated request of ten.
func (s *Server) route(ctx context.Context, ten *tenant, method, route string, q url.Values, body []byte) (int, any) {
	seg := strings.Split(strings.TrimPrefix(route, "/"), "/")
	for i, v := range seg {
		if u, err := url.PathUnescape(v); err == nil {
			seg[i] = u
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if method == http.MethodGet && len(seg) == 2 && seg[0] == "transfer" && seg[1] == "recent" && !ten.forge {
		return s.recent(ten)
	}
	if method == http.MethodGet && len(seg) == 2 && seg[0] == "data" {
		return s.dataURL(ten, seg[1])
	}
	if len(seg) < 2 {
		return http.StatusNotFound, errorReply{"no such route"}
	}
	t := s.transfers[seg[1]]
	if t == nil || t.Tenant != ten.id {
		return http.StatusNotFound, errorReply{"no such transfer"}
	}
	s.expire(t)
	switch {
	case method == http.MethodPost && seg[0] == "progress" && len(seg) == 2 && !ten.forge:
		status, reply := s.progress(t, body)
		if ctx.Err() != nil && status != http.StatusBadRequest && t.SettleCalls > 0 {
			var p platform.Progress
			if json.Unmarshal(body, &p) == nil && p.Final() {
				t.SettleCallsCut++
			}
		}
		return status, reply
	case method == http.MethodPost && seg[0] == "message" && len(seg) == 3 && seg[2] == "status" && ten.forge:
		return s.messageStatus(t, body)
	}
	if t.Status != platform.InProgress {
		t.Refused++
		return http.StatusForbidden, errorReply{"Transfer '" + t.ID + "' is already in a settled state, no further actions are allowed"}
	}
	switch {
	case method == http.MethodGet && seg[0] == "mapping" && len(seg) == 3 && seg[2] == "page":
		return s.mappingPage(t, q)
	case method == http.MethodPost && seg[0] == "mapping" && len(seg) == 3 && seg[2] == "find":
		var keys []string
		if json.Unmarshal(body, &keys) != nil {
			return http.StatusBadRequest, errorReply{"body must be a list of keys"}
		}
		out := map[string]string{}
		for _, k := range keys {
			if v, ok := t.Mappings[q.Get("namespace")][k]; ok {
				out[k] = v
			}
		}
		return http.StatusOK, out
	case method == http.MethodGet && seg[0] == "data" && len(seg) == 3 && seg[2] == "all":
		return http.StatusOK, append([]platform.AppData{}, t.Data...)
	case method == http.MethodGet && seg[0] == "error" && len(seg) == 2 && !ten.forge:
		if t.Error == nil {
			return http.StatusNotFound, errorReply{"no error"}
		}
		return http.StatusOK, t.Error
	case method == http.MethodPost && seg[0] == "feedback" && len(seg) == 2 && !ten.forge:
		t.Feedback = append(t.Feedback, json.RawMessage(slices.Clone(body)))
		return http.StatusOK, nil
	}
	return http.StatusNotFound, errorReply{"no such route"}
}

func (s *Server) progress(t *Transfer, body []byte) (int, any) {
	var p platform.Progress
	if err := json.Unmarshal(body, &p); err != nil || p.Percent < 0 || p.Percent > 100 ||
		(p.Status != platform.InProgress && !p.Final()) {
		return http.StatusBadRequest, errorReply{"invalid progress"}
	}
	if p.Final() {
		t.SettleCalls++
	}
	switch {
	case t.Status == "TIMED_OUT":
		t.Refused++
		return http.StatusBadRequest, errorReply{"transfer " + t.ID + " is older than 14 days"}
	case t.Status != platform.InProgress:
		t.Refused++
		return http.StatusForbidden, errorReply{"Transfer '" + t.ID + "' is already in a settled state, no further actions are allowed"}
	case p.Final():
		t.Status, t.Message, t.SettledBy = p.Status, p.Message, "app"
		t.Settles++
	case p.Percent > t.Percent:
		t.Percent, t.Message = p.Percent, p.Message
	}
	return http.StatusOK, nil
}

func (s *Server) messageStatus(t *Transfer, body []byte) (int, any) {
	var m struct {
		Status     string   `json:"status"`
		MessageIDs []string `json:"messageIds"`
	}
	if json.Unmarshal(body, &m) != nil || (m.Status != platform.Success && m.Status != platform.Failed) || len(m.MessageIDs) == 0 {
		return http.StatusBadRequest, errorReply{"invalid message status"}
	}
	if t.Status != platform.InProgress {
		t.Refused++
		return http.StatusForbidden, errorReply{"Transfer '" + t.ID + "' is already in a settled state, no further actions are allowed"}
	}
	for _, id := range m.MessageIDs {
		if !slices.Contains(t.Messages, id) {
			return http.StatusBadRequest, errorReply{"unknown message " + id}
		}
	}
	for _, id := range m.MessageIDs {
		t.Acked[id] = m.Status
		t.AckCalls[id]++
	}
	t.LastActivity = s.opts.Now()
	if len(t.Acked) == len(t.Messages) {
		t.Status, t.SettledBy = platform.Success, "app"
		for _, st := range t.Acked {
			if st == platform.Failed {
				t.Status = platform.Failed
			}
		}
		t.Settles++
	}
	return http.StatusOK, nil
}

func (s *Server) mappingPage(t *Transfer, q url.Values) (int, any) {
	ns := t.Mappings[q.Get("namespace")]
	keys := make([]string, 0, len(ns))
	for k := range ns {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	size, err := strconv.Atoi(q.Get("pageSize"))
	if err != nil || size < 1 || size > 5000 {
		size = 5000
	}
	i := 0
	if last := q.Get("lastEntity"); last != "" {
		i = sort.Search(len(keys), func(i int) bool { return keys[i] > last })
	}
	j := min(i+size, len(keys))
	var page platform.MappingPage
	page.Items = make(map[string]string, j-i)
	for _, k := range keys[i:j] {
		page.Items[k] = ns[k]
	}
	page.Meta.PageSize, page.Meta.HasNext = j-i, j < len(keys)
	if j > i {
		page.Meta.LastEntity = keys[j-1]
	}
	return http.StatusOK, page
}

func (s *Server) dataURL(ten *tenant, key string) (int, any) {
	for _, t := range s.transfers {
		if t.Tenant != ten.id {
			continue
		}
		for _, d := range t.Data {
			if d.S3Key != key {
				continue
			}
			s.expire(t)
			if t.Status != platform.InProgress {
				t.Refused++
				return http.StatusForbidden, errorReply{"the data of transfer " + t.ID + " is gone"}
			}
			return http.StatusOK, map[string]string{"url": s.URL + "/s3/" + url.PathEscape(key) + "?signature=sim"}
		}
	}
	return http.StatusNotFound, errorReply{"no such file"}
}

func (s *Server) recent(ten *tenant) (int, any) {
	out := []platform.RecentTransfer{}
	for _, t := range s.transfers {
		if t.Tenant != ten.id {
			continue
		}
		s.expire(t)
		if t.Status == platform.InProgress && len(out) < 100 {
			out = append(out, platform.RecentTransfer{TransferID: t.ID})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TransferID < out[j].TransferID })
	return http.StatusOK, out
}
