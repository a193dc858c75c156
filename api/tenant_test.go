package api_test

import (
	"bytes"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/engine"
)

// Finding 10.C: another tenant's events could name our transfer as their
// original (and join our lineage) or reuse our migration id (and join our
// migration). Both stay inside the tenant, whatever the order of events.
func TestTenantsDoNotMix(t *testing.T) {
	for _, order := range []string{"ours first", "theirs first"} {
		t.Run(order, func(t *testing.T) {
			env := apitest.New(t, apitest.Options{})
			ours := []*engine.Event{
				apitest.Event(t, apitest.Spec{TransferID: "a-1", MessageID: "a1", MigrationID: "mig-a", Issuer: "tenant-a"}),
				apitest.Event(t, apitest.Spec{TransferID: "a-2", MessageID: "a2", MigrationID: "mig-a", Issuer: "tenant-a", Original: "a-1"}),
			}
			theirs := []*engine.Event{
				apitest.Event(t, apitest.Spec{TransferID: "b-1", MessageID: "b1", MigrationID: "mig-a", Issuer: "tenant-b", Original: "a-1"}),
			}
			if order == "ours first" {
				env.Append(append(ours, theirs...)...)
			} else {
				env.Append(append(theirs, ours...)...)
			}
			env.Sync()

			var lin api.Lineage
			mustGet(t, env, "/v1/transfers/a-1/lineage", &lin)
			if lin.Root != "a-1" || len(lin.Transfers) != 2 || lin.Transfers[0].TransferID != "a-1" || lin.Transfers[1].TransferID != "a-2" {
				t.Errorf("tenant-a's lineage: root %s, %d transfers %v", lin.Root, len(lin.Transfers), lin.Transfers)
			}
			lin = api.Lineage{}
			mustGet(t, env, "/v1/transfers/b-1/lineage", &lin)
			if lin.Root != "b-1" || len(lin.Transfers) != 1 {
				t.Errorf("tenant-b's re-run of a-1: root %s, %d transfers", lin.Root, len(lin.Transfers))
			}

			var m api.Migration
			mustGet(t, env, "/v1/migrations/mig-a?tenant=tenant-a", &m)
			if m.Tenant != "tenant-a" || len(m.Transfers) != 2 || len(m.OtherTenants) != 1 || m.OtherTenants[0] != "tenant-b" {
				t.Errorf("mig-a of tenant-a: %+v", m)
			}
			for _, v := range m.Transfers {
				if v.Issuer != "tenant-a" {
					t.Errorf("tenant-a's migration lists %s of %s", v.TransferID, v.Issuer)
				}
			}
			m = api.Migration{}
			mustGet(t, env, "/v1/migrations/mig-a?tenant=tenant-b", &m)
			if len(m.Transfers) != 1 || m.Transfers[0].TransferID != "b-1" {
				t.Errorf("mig-a of tenant-b: %+v", m)
			}
			var list api.TransferList
			mustGet(t, env, "/v1/transfers?migrationId=mig-a&tenant=tenant-a", &list)
			if len(list.Transfers) != 2 {
				t.Errorf("?migrationId=&tenant= lists %d", len(list.Transfers))
			}
		})
	}
}

// Issue 10 item 7: a hostile tenant reusing our migration id and cloud URL
// does not join our lists. Without &tenant= a list by migrationId or
// cloudUrl shows the tenant of the oldest transfer naming it (the one
// that used it first) and names the others; &tenant= picks one. Paging
// with small pages visits each of the tenant's transfers once.
func TestListsByMigrationAndSiteStayInsideATenant(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	const site = "https://a.atlassian.net"
	var events []*engine.Event
	wantA, wantB := []string{}, []string{}
	for i := range 12 {
		id := fmt.Sprintf("a-%02d", i)
		events = append(events, apitest.Event(t, apitest.Spec{TransferID: id, MessageID: id, MigrationID: "mig-a",
			CloudURL: site, Issuer: "tenant-a"}))
		wantA = append([]string{id}, wantA...) // newest first
		if i < 9 {
			id := fmt.Sprintf("b-%02d", i)
			events = append(events, apitest.Event(t, apitest.Spec{TransferID: id, MessageID: id, MigrationID: "mig-a",
				CloudURL: site, Issuer: "tenant-b"}))
			wantB = append([]string{id}, wantB...)
		}
	}
	env.Append(events...)
	env.Sync()

	for _, tc := range []struct {
		name, query string
		tenant      string
		others      []string
		want        []string
	}{
		{"migration", "migrationId=mig-a", "tenant-a", []string{"tenant-b"}, wantA},
		{"migration of tenant-b", "migrationId=mig-a&tenant=tenant-b", "tenant-b", []string{"tenant-a"}, wantB},
		{"migration of tenant-a", "migrationId=mig-a&tenant=tenant-a", "tenant-a", []string{"tenant-b"}, wantA},
		{"site", "cloudUrl=" + url.QueryEscape(site), "tenant-a", []string{"tenant-b"}, wantA},
		{"site of tenant-b", "cloudUrl=" + url.QueryEscape(site) + "&tenant=tenant-b", "tenant-b", []string{"tenant-a"}, wantB},
		{"migration and site", "migrationId=mig-a&cloudUrl=" + url.QueryEscape(site), "tenant-a", []string{"tenant-b"}, wantA},
		{"tenant without transfers", "migrationId=mig-a&tenant=tenant-c", "tenant-c", []string{"tenant-a", "tenant-b"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, limit := range []int{1, 5, 500} {
				var got []string
				cursor := ""
				for pages := 0; ; pages++ {
					if pages > len(events) {
						t.Fatal("more pages than transfers")
					}
					path := "/v1/transfers?" + tc.query + "&limit=" + strconv.Itoa(limit)
					if cursor != "" {
						path += "&cursor=" + url.QueryEscape(cursor)
					}
					var l api.TransferList
					body := mustGet(t, env, path, &l)
					if l.Tenant != tc.tenant || !slices.Equal(l.OtherTenants, tc.others) {
						t.Fatalf("%s: tenant %q, otherTenants %v; want %q, %v", path, l.Tenant, l.OtherTenants, tc.tenant, tc.others)
					}
					if !bytes.HasPrefix(body, []byte(`{"transfers":[`)) {
						t.Fatalf("%s: body %s does not start with the transfers", path, body)
					}
					for _, v := range l.Transfers {
						got = append(got, v.TransferID)
					}
					if cursor = l.NextCursor; cursor == "" {
						break
					}
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("limit %d: got %v, want %v", limit, got, tc.want)
				}
			}
		})
	}

	// Lists not by migration or site stay partner-wide, without tenant.
	for _, query := range []string{"limit=500", "phase=listener_triggered&limit=500", "needsAction=false&limit=500"} {
		var l api.TransferList
		body := mustGet(t, env, "/v1/transfers?"+query, &l)
		if len(l.Transfers) != len(events) || bytes.Contains(body, []byte(`"tenant"`)) || bytes.Contains(body, []byte("otherTenants")) {
			t.Errorf("/v1/transfers%s: %d transfers of %d, body %.200s", query, len(l.Transfers), len(events), body)
		}
	}
}
