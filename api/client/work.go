package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/transferd/transferd/engine"
)

// WorkItem is an upload leased to an importer (POST /v1/work/claim).
type WorkItem struct {
	TransferID string        `json:"transferId"`
	Tenant     string        `json:"tenant"`
	Source     engine.Source `json:"source"`
	Key        string        `json:"key"`
	Label      string        `json:"label"`
	Kind       string        `json:"kind,omitempty"`
	Attempt    int           `json:"attempt"`
	Lease      string        `json:"lease"`
	LeaseUntil time.Time     `json:"leaseUntil"`
}

// WorkReport is an importer's report on an upload.
type WorkReport struct {
	Status    string `json:"status"` // progress, done or failed
	Retryable bool   `json:"retryable,omitempty"`
	Percent   int    `json:"percent,omitempty"` // progress only: 0-100
	Message   string `json:"message,omitempty"`
	Attempt   int    `json:"attempt,omitempty"` // the claim's attempt
}

// WorkResult is the upload's work as recorded.
type WorkResult struct {
	TransferID string            `json:"transferId"`
	Key        string            `json:"key"`
	Work       engine.UploadWork `json:"work"`
}

// DeadLetter is an upload that failed for good.
type DeadLetter struct {
	TransferID string            `json:"transferId"`
	Tenant     string            `json:"tenant"`
	Source     engine.Source     `json:"source"`
	Key        string            `json:"key"`
	Label      string            `json:"label"`
	Work       engine.UploadWork `json:"work"`
}

// Claim leases the next upload to import; nil when there is none now.
func (c *Client) Claim(ctx context.Context) (*WorkItem, error) {
	var it WorkItem
	status, err := c.post(ctx, "/v1/work/claim", nil, &it)
	if err != nil || status == http.StatusNoContent {
		return nil, err
	}
	return &it, nil
}

// Report reports the upload key of transferID done, failed, or in
// progress (which extends the lease).
func (c *Client) Report(ctx context.Context, transferID, key string, r WorkReport) (*WorkResult, error) {
	var res WorkResult
	if _, err := c.post(ctx, uploadPath(transferID, key, "report"), r, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Requeue puts a dead letter back to work.
func (c *Client) Requeue(ctx context.Context, transferID, key, message string) (*WorkResult, error) {
	var res WorkResult
	body := struct {
		Message string `json:"message,omitempty"`
	}{message}
	if _, err := c.post(ctx, uploadPath(transferID, key, "requeue"), body, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// DeadLetters lists the uploads that failed for good.
func (c *Client) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	v, err := get[struct {
		DeadLetters []DeadLetter `json:"deadLetters"`
	}](ctx, c, "/v1/dead-letters", nil)
	if err != nil {
		return nil, err
	}
	return v.DeadLetters, nil
}

func uploadPath(transferID, key, action string) string {
	return "/v1/transfers/" + url.PathEscape(transferID) + "/uploads/" + url.PathEscape(key) + "/" + action
}

// post sends body (nil for none) as JSON and decodes a 200 reply into out.
func (c *Client) post(ctx context.Context, path string, body, out any) (int, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return 0, fmt.Errorf("transferd: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("transferd: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("transferd: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return resp.StatusCode, nil
	case http.StatusOK:
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("transferd: decoding %s: %w", path, err)
		}
		return resp.StatusCode, nil
	}
	return resp.StatusCode, replyError(resp)
}
