package platformtest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/ingest/platform/platformtest"
)

const appKey = "com.example.app"

// clock is a platform clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func client() *platform.Client {
	return &platform.Client{AppKey: appKey, Rate: -1, Retry: platform.Retry{Attempts: 5, Base: time.Millisecond, Max: 2 * time.Millisecond}}
}

func TestConnectTransferLifecycle(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	p := platformtest.New(platformtest.Options{AppKey: appKey, Now: clk.Now, TooManyEvery: 3})
	defer p.Close()
	site := platform.ConnectSite{BaseURL: p.AddConnectTenant("ck-1", "s3cret-s3cret-s3cret", true), Secret: []byte("s3cret-s3cret-s3cret")}
	p.AddTransfer(platformtest.Transfer{ID: "t-1", Tenant: "ck-1", Data: []platform.AppData{{S3Key: "k1", Label: "DATABASE"}}})
	c := client()
	ctx := context.Background()

	for _, pct := range []int{30, 10} {
		if err := c.ReportProgress(ctx, site, "t-1", platform.Progress{Status: platform.InProgress, Percent: pct}); err != nil {
			t.Fatal(err)
		}
	}
	if tr, _ := p.Get("t-1"); tr.Percent != 30 {
		t.Fatalf("percent %d: a lower percent must be ignored", tr.Percent)
	}
	list, err := c.AppDataList(ctx, site, "t-1")
	if err != nil || len(list) != 1 {
		t.Fatalf("data %v %v", list, err)
	}
	if _, err := c.AppDataURL(ctx, site, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReportProgress(ctx, site, "t-1", platform.Progress{Status: platform.Success}); err != nil {
		t.Fatal(err)
	}
	if err := c.ReportProgress(ctx, site, "t-1", platform.Progress{Status: platform.Failed}); !errors.Is(err, platform.ErrSettled) {
		t.Fatalf("a second settle: %v", err)
	}
	if _, err := c.AppDataURL(ctx, site, "k1"); !errors.Is(err, platform.ErrSettled) {
		t.Fatalf("data after settle: %v", err)
	}
	tr, _ := p.Get("t-1")
	if tr.Status != platform.Success || tr.Settles != 1 || tr.Refused != 2 || tr.SettledBy != "app" {
		t.Fatalf("%+v", tr)
	}

	// Another tenant's secret cannot touch it; 14 days on, progress is 400.
	other := platform.ConnectSite{BaseURL: p.AddConnectTenant("ck-2", "other-other-other-other", false), Secret: []byte("other-other-other-other")}
	p.AddTransfer(platformtest.Transfer{ID: "t-2", Tenant: "ck-1"})
	if err := c.ReportProgress(ctx, other, "t-2", platform.Progress{Status: platform.Success}); !errors.Is(err, platform.ErrNotFound) {
		t.Fatalf("another tenant's transfer: %v", err)
	}
	wrong := platform.ConnectSite{BaseURL: site.BaseURL, Secret: []byte("not-the-secret-at-all")}
	var se *platform.StatusError
	if err := c.ReportProgress(ctx, wrong, "t-2", platform.Progress{Status: platform.Success}); !errors.As(err, &se) || se.StatusCode != 401 {
		t.Fatalf("a wrong secret: %v", err)
	}
	clk.Add(platformtest.SettleLimit)
	if err := c.ReportProgress(ctx, site, "t-2", platform.Progress{Status: platform.Success}); !errors.Is(err, platform.ErrRejected) {
		t.Fatalf("after 14 days: %v", err)
	}
	if tr, _ := p.Get("t-2"); tr.Status != "TIMED_OUT" || tr.Settles != 0 {
		t.Fatalf("%+v", tr)
	}
}

func TestForgeMessagesTimeOut(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	p := platformtest.New(platformtest.Options{Now: clk.Now})
	defer p.Close()
	inst := platform.ForgeInstallation{APIBaseURL: p.AddForgeInstallation("inst-1", "sys-token"), Token: "sys-token"}
	p.AddTransfer(platformtest.Transfer{ID: "f-1", Tenant: "inst-1", Messages: []string{"m1", "m2"}})
	p.AddTransfer(platformtest.Transfer{ID: "f-2", Tenant: "inst-1", Messages: []string{"m1", "m2"}})
	c := client()
	ctx := context.Background()
	for _, id := range []string{"f-1", "f-2"} {
		if err := c.MessageStatus(ctx, inst, id, platform.Success, []string{"m1"}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(10 * time.Minute)
	if err := c.MessageStatus(ctx, inst, "f-1", platform.Failed, []string{"m2"}); err != nil {
		t.Fatal(err)
	}
	clk.Add(10 * time.Minute)
	if tr, _ := p.Get("f-1"); tr.Status != platform.Failed || tr.SettledBy != "app" || tr.Settles != 1 {
		t.Fatalf("f-1 %+v", tr)
	}
	if tr, _ := p.Get("f-2"); tr.Status != platform.Failed || tr.SettledBy != "platform" {
		t.Fatalf("f-2 must time out after 15 minutes without a message status: %+v", tr)
	}
	if err := c.MessageStatus(ctx, inst, "f-2", platform.Success, []string{"m2"}); !errors.Is(err, platform.ErrSettled) {
		t.Fatalf("an ack after the timeout: %v", err)
	}
	bad := platform.ForgeInstallation{APIBaseURL: inst.APIBaseURL, Token: "stolen"}
	var se *platform.StatusError
	if err := c.MessageStatus(ctx, bad, "f-1", platform.Success, []string{"m1"}); !errors.As(err, &se) || se.StatusCode != 401 {
		t.Fatalf("a wrong token: %v", err)
	}
}

// TestListenForgeARI serves on an address of its own and routes a Forge
// installation whose id is an ARI (it holds a slash).
func TestListenForgeARI(t *testing.T) {
	p, err := platformtest.Listen("127.0.0.1:0", platformtest.Options{AppKey: appKey})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	id := "ari:cloud:ecosystem::installation/6a1d0b7c-0000-4000-8000-000000000001"
	inst := platform.ForgeInstallation{APIBaseURL: p.AddForgeInstallation(id, "sys-token"), Token: "sys-token"}
	p.AddTransfer(platformtest.Transfer{ID: "f-1", Tenant: id, Data: []platform.AppData{{S3Key: "k1"}}})
	list, err := client().AppDataList(context.Background(), inst, "f-1")
	if err != nil || len(list) != 1 || list[0].S3Key != "k1" {
		t.Fatalf("data list %v %v", list, err)
	}
	if !p.SettleByPlatform("f-1", platform.Success) || p.SettleByPlatform("f-1", platform.Failed) {
		t.Fatal("SettleByPlatform settles an in-progress transfer once")
	}
	if tr, _ := p.Get("f-1"); tr.Status != platform.Success || tr.SettledBy != "platform" {
		t.Fatalf("%+v", tr)
	}
}
