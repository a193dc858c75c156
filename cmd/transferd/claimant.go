package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// instanceClaimant is the name serve --drive claims settles under: random,
// kept in <data>/claimant so that serve restarted on the same data
// directory takes its own unfinished settles back at once (a settle cut
// short by shutdown leaves its claim), while other instances (other data
// directories) wait for the claim's lease.
func instanceClaimant(data string) (string, error) {
	path := filepath.Join(data, "claimant")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); len(id) >= 16 && len(id) <= 64 {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("driver claimant: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.MkdirAll(data, 0o700); err != nil {
		return "", fmt.Errorf("driver claimant: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("driver claimant: %w", err)
	}
	return id, nil
}
