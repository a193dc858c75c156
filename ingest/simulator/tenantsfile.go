package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/transferd/transferd/engine"
)

// tenantsFile is the JSON of Config.TenantsFile: the simulator's
// development tenants, kept so that every run plays the same ones. It holds
// shared secrets: the file is 0600 in a 0700 directory.
type tenantsFile struct {
	Connect []storedConnect `json:"connect"`
	Forge   []storedForge   `json:"forge"`
}

type storedConnect struct {
	ClientKey    string `json:"clientKey"`
	SharedSecret string `json:"sharedSecret"`
	ProductType  string `json:"productType"`
	CloudURL     string `json:"cloudUrl"`
	CloudID      string `json:"cloudId"`
}

type storedForge struct {
	InstallationID string `json:"installationId"`
	CloudURL       string `json:"cloudUrl"`
	CloudID        string `json:"cloudId"`
}

// maxTenantsFile caps what is read: a few thousand tenants at most.
const maxTenantsFile = 4 << 20

// keepTenants makes tenants the ones kept in path: the i-th generated
// Connect tenant (and Forge installation) takes the identity, secret and
// site of the i-th one stored, and those beyond the stored ones are added
// to the file. It returns how many of tenants were stored already. Tenants
// given by the caller (Config.ConnectTenants) are left alone.
func keepTenants(path string, tenants []*tenant) (reused int, err error) {
	var f tenantsFile
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("simulator: tenants file: %w", err)
	case len(b) > maxTenantsFile:
		return 0, fmt.Errorf("simulator: tenants file %s: over %d bytes (delete it to start afresh)", path, maxTenantsFile)
	default:
		if err := json.Unmarshal(b, &f); err != nil {
			return 0, fmt.Errorf("simulator: tenants file %s: %w (delete it to start afresh)", path, err)
		}
		if err := f.check(); err != nil {
			return 0, fmt.Errorf("simulator: tenants file %s: %w (delete it to start afresh)", path, err)
		}
	}
	nConnect, nForge, added := 0, 0, false
	for _, t := range tenants {
		switch {
		case t.given:
		case t.source == engine.SourceConnect:
			if nConnect < len(f.Connect) {
				c := f.Connect[nConnect]
				t.issuer, t.secret, t.product, t.cloudURL, t.cloudID = c.ClientKey, []byte(c.SharedSecret), c.ProductType, c.CloudURL, c.CloudID
				t.reused = true
			} else {
				f.Connect = append(f.Connect, storedConnect{ClientKey: t.issuer, SharedSecret: string(t.secret), ProductType: t.product, CloudURL: t.cloudURL, CloudID: t.cloudID})
				added = true
			}
			nConnect++
		default:
			if nForge < len(f.Forge) {
				s := f.Forge[nForge]
				t.issuer, t.cloudURL, t.cloudID = s.InstallationID, s.CloudURL, s.CloudID
				t.reused = true
			} else {
				f.Forge = append(f.Forge, storedForge{InstallationID: t.issuer, CloudURL: t.cloudURL, CloudID: t.cloudID})
				added = true
			}
			nForge++
		}
		if t.reused {
			reused++
		}
	}
	if added {
		if err := f.write(path); err != nil {
			return 0, err
		}
	}
	return reused, nil
}

// check refuses entries a run could not use.
func (f *tenantsFile) check() error {
	for _, c := range f.Connect {
		switch {
		case c.ClientKey == "" || len(c.ClientKey) > 256:
			return errors.New("a Connect tenant needs a clientKey of at most 256 bytes")
		case len(c.SharedSecret) < 32 || len(c.SharedSecret) > 1024:
			return fmt.Errorf("Connect tenant %s: the shared secret must have 32 to 1024 bytes", c.ClientKey)
		case c.ProductType != "jira" && c.ProductType != "confluence":
			return fmt.Errorf("Connect tenant %s: productType %q, want jira or confluence", c.ClientKey, c.ProductType)
		case c.CloudURL == "" || c.CloudID == "":
			return fmt.Errorf("Connect tenant %s: cloudUrl and cloudId are required", c.ClientKey)
		}
	}
	for _, s := range f.Forge {
		if s.InstallationID == "" || s.CloudURL == "" || s.CloudID == "" {
			return errors.New("a Forge installation needs an installationId, a cloudUrl and a cloudId")
		}
	}
	return nil
}

// write replaces path with f, atomically, 0600.
func (f *tenantsFile) write(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("simulator: tenants file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("simulator: tenants file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".simulator-tenants-*") // 0600
	if err != nil {
		return fmt.Errorf("simulator: tenants file: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("simulator: tenants file: %w", err)
	}
	return nil
}
