package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/engine"
)

// transfers list by migration stays inside one tenant, also through
// --all's pages, and names the other tenants using the id.
func TestTransfersListStaysInsideATenant(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	var events []*engine.Event
	var wantA, wantB []string
	for i := range 5 {
		for _, tenant := range []string{"tenant-a", "tenant-b"} {
			id := fmt.Sprintf("%s-%d", tenant, i)
			events = append(events, apitest.Event(t, apitest.Spec{TransferID: id, MessageID: id, MigrationID: "mig-a", Issuer: tenant}))
			if tenant == "tenant-a" {
				wantA = append([]string{id}, wantA...)
			} else {
				wantB = append([]string{id}, wantB...)
			}
		}
	}
	env.Append(events...)
	env.Sync()
	vars := envOf(map[string]string{"TRANSFERD_API_TOKEN": apitest.Token})
	list := func(args ...string) string {
		t.Helper()
		var out, errOut lockedBuffer
		args = append([]string{"transferd", "transfers", "list", "--server", env.URL, "--migration-id", "mig-a", "--limit", "2"}, args...)
		if err := run(context.Background(), args, vars, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	for _, tc := range []struct {
		args   []string
		tenant string
		others []string
		want   []string
	}{
		{nil, "tenant-a", []string{"tenant-b"}, wantA},
		{[]string{"--tenant", "tenant-b"}, "tenant-b", []string{"tenant-a"}, wantB},
	} {
		var got struct {
			Transfers []struct {
				TransferID string `json:"transferId"`
			} `json:"transfers"`
			Tenant       string   `json:"tenant"`
			OtherTenants []string `json:"otherTenants"`
		}
		if err := json.Unmarshal([]byte(list(append(tc.args, "--all", "--json")...)), &got); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, v := range got.Transfers {
			ids = append(ids, v.TransferID)
		}
		if !slices.Equal(ids, tc.want) || got.Tenant != tc.tenant || !slices.Equal(got.OtherTenants, tc.others) {
			t.Errorf("%v: tenant %s, others %v, %v; want %s, %v, %v", tc.args, got.Tenant, got.OtherTenants, ids, tc.tenant, tc.others, tc.want)
		}
	}
	if out := list(); !strings.HasPrefix(out, "tenant tenant-a (also used by tenant-b") || strings.Contains(out, "tenant-b-") {
		t.Errorf("transfers list --migration-id:\n%s", out)
	}
}
