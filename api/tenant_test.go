package api_test

import (
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
