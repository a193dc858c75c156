package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Transfer statuses a progress report may carry.
const (
	InProgress = "IN_PROGRESS"
	Success    = "SUCCESS"
	Failed     = "FAILED"
	Incomplete = "INCOMPLETE"
)

// Progress is a Connect progress report. With a final status (SUCCESS,
// FAILED, INCOMPLETE) it settles the transfer.
type Progress struct {
	Status  string `json:"status"`
	Percent int    `json:"percent,omitempty"` // 1–99 while IN_PROGRESS; a lower one than before is ignored by the platform
	Message string `json:"message,omitempty"`
}

// Final reports whether p settles the transfer.
func (p Progress) Final() bool {
	return p.Status == Success || p.Status == Failed || p.Status == Incomplete
}

// ReportProgress posts p for transferID on site: progress while
// IN_PROGRESS, the settlement otherwise. errors.Is(err, ErrSettled) means
// the transfer was settled already.
func (c *Client) ReportProgress(ctx context.Context, site ConnectSite, transferID string, p Progress) error {
	switch {
	case p.Status != InProgress && !p.Final():
		return fmt.Errorf("%w: status %q is none of IN_PROGRESS, SUCCESS, FAILED, INCOMPLETE", ErrInvalid, p.Status)
	case p.Percent < 0 || p.Percent > 100:
		return fmt.Errorf("%w: percent %d is outside 0–100", ErrInvalid, p.Percent)
	case len(p.Message) > 4096:
		return fmt.Errorf("%w: message of %d bytes (at most 4096)", ErrInvalid, len(p.Message))
	}
	op := "progress"
	if p.Final() {
		op = "settle"
	}
	return c.send(ctx, site, op, transferID, http.MethodPost, "/progress/%s", nil, p, nil)
}

// MessageStatus acknowledges Forge messages (uploaded:app_data) of
// transferID: status SUCCESS or FAILED, due within 15 minutes of each.
func (c *Client) MessageStatus(ctx context.Context, inst ForgeInstallation, transferID, status string, messageIDs []string) error {
	switch {
	case status != Success && status != Failed:
		return fmt.Errorf("%w: message status %q is neither SUCCESS nor FAILED", ErrInvalid, status)
	case len(messageIDs) == 0:
		return fmt.Errorf("%w: no message ids", ErrInvalid)
	}
	body := struct {
		Status     string   `json:"status"`
		MessageIDs []string `json:"messageIds"`
	}{status, messageIDs}
	return c.send(ctx, inst, "forge.status", transferID, http.MethodPost, "/message/%s/status", nil, body, nil)
}

// MappingPage is one page of a namespace's mappings: server id → cloud id.
type MappingPage struct {
	Items map[string]string `json:"items"`
	Meta  struct {
		PageSize   int    `json:"pageSize"`
		HasNext    bool   `json:"hasNext"`
		LastEntity string `json:"lastEntity"`
	} `json:"meta"`
}

// MaxMappingPage is the largest page asked for.
const MaxMappingPage = 1200

// Mappings returns the page of namespace's mappings after lastEntity
// (empty for the first); pageSize 0 or above MaxMappingPage asks for
// MaxMappingPage.
func (c *Client) Mappings(ctx context.Context, t Target, transferID, namespace, lastEntity string, pageSize int) (MappingPage, error) {
	var page MappingPage
	if namespace == "" {
		return page, fmt.Errorf("%w: no namespace", ErrInvalid)
	}
	if pageSize <= 0 || pageSize > MaxMappingPage {
		pageSize = MaxMappingPage
	}
	q := url.Values{"namespace": {namespace}, "pageSize": {strconv.Itoa(pageSize)}}
	if lastEntity != "" {
		q.Set("lastEntity", lastEntity)
	}
	err := c.send(ctx, t, "mapping.page", transferID, http.MethodGet, "/mapping/%s/page", q, nil, &page)
	return page, err
}

// FindMappings returns the mappings of keys in namespace.
func (c *Client) FindMappings(ctx context.Context, t Target, transferID, namespace string, keys []string) (map[string]string, error) {
	if namespace == "" || len(keys) == 0 {
		return nil, fmt.Errorf("%w: find needs a namespace and keys", ErrInvalid)
	}
	out := map[string]string{}
	err := c.send(ctx, t, "mapping.find", transferID, http.MethodPost, "/mapping/%s/find", url.Values{"namespace": {namespace}}, keys, &out)
	return out, err
}

// AppData is one file the server app uploaded for the transfer.
type AppData struct {
	S3Key string `json:"s3Key"`
	Label string `json:"label"`
}

// AppDataList returns the files uploaded for transferID.
func (c *Client) AppDataList(ctx context.Context, t Target, transferID string) ([]AppData, error) {
	var out []AppData
	err := c.send(ctx, t, "data.list", transferID, http.MethodGet, "/data/%s/all", nil, nil, &out)
	return out, err
}

// AppDataURL returns the signed URL of the file s3Key (gone once settled).
func (c *Client) AppDataURL(ctx context.Context, t Target, s3Key string) (string, error) {
	var out struct {
		URL string `json:"url"`
	}
	if err := c.send(ctx, t, "data.url", "", http.MethodGet, "/data/%s", nil, nil, &out, s3Key); err != nil {
		return "", err
	}
	if out.URL == "" {
		return "", fmt.Errorf("platform: the reply for %q has no url", s3Key)
	}
	return out.URL, nil
}

// RecentTransfer is one of the app's recent (active) transfers.
type RecentTransfer struct {
	TransferID       string          `json:"transferId"`
	MigrationDetails json.RawMessage `json:"migrationDetails,omitempty"`
}

// RecentTransfers lists the app's recent active transfers on site (up to
// 100, says the platform).
func (c *Client) RecentTransfers(ctx context.Context, site ConnectSite) ([]RecentTransfer, error) {
	var out []RecentTransfer
	err := c.send(ctx, site, "transfer.recent", "", http.MethodGet, "/transfer/recent", nil, nil, &out)
	return out, err
}

// ListenerError is the server app's exception behind listener-errored.
type ListenerError struct {
	ExceptionType  string `json:"exceptionType"`
	SafeStackTrace string `json:"safeStackTrace"`
}

// Error returns the listener error of transferID.
func (c *Client) Error(ctx context.Context, site ConnectSite, transferID string) (ListenerError, error) {
	var out ListenerError
	err := c.send(ctx, site, "error", transferID, http.MethodGet, "/error/%s", nil, nil, &out)
	return out, err
}

// Feedback sends body (any JSON value) to the server app of transferID.
func (c *Client) Feedback(ctx context.Context, site ConnectSite, transferID string, body any) error {
	return c.send(ctx, site, "feedback", transferID, http.MethodPost, "/feedback/%s", nil, body, nil)
}

// send builds one call of route (a format with at most one %s, filled with
// the escaped transferID or, when given, the escaped arg) and does it.
func (c *Client) send(ctx context.Context, t Target, op, transferID, method, route string, q url.Values, body, out any, arg ...string) error {
	var p string
	switch {
	case len(arg) == 1:
		seg, err := segment("key", arg[0])
		if err != nil {
			return err
		}
		p = fmt.Sprintf(route, seg)
	case transferID != "":
		seg, err := segment("transferId", transferID)
		if err != nil {
			return err
		}
		p = fmt.Sprintf(route, seg)
	default:
		p = route
	}
	u, basePath, err := endpoint(t.base(), t.prefix()+p, q)
	if err != nil {
		return err
	}
	r := request{op: op, transferID: transferID, method: method, u: u}
	if body != nil {
		if r.body, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalid, op, err)
		}
	}
	if r.auth, err = t.authorizer(c, method, u, basePath); err != nil {
		return err
	}
	return c.do(ctx, r, out)
}
