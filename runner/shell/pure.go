package shell

import (
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/internal/toolargs"
)

// resolveTTL bounds how long a system-binary resolution is reused.
const resolveTTL = 10 * time.Second

// resolved is a cached systemTool answer.
type resolved struct {
	ok bool
	at time.Time
}

// resolveCache remembers, per name, PATH and directory set, whether a
// command name resolves to the system binary of that name, so that the
// fast path and the in-process tools do not walk PATH and follow symlinks
// for every command (a third of a fast-path hook's time otherwise).
type resolveCache struct {
	mu sync.Mutex
	m  map[string]resolved
}

// systemTool reports whether name, looked up in the hook's PATH, is the
// root-owned binary of that name in one of dirs.
func (c *resolveCache) systemTool(hc cmdIO, name string, dirs []string) bool {
	if strings.Contains(name, "/") {
		return false
	}
	key := name + "\x00" + hc.Env.Get("PATH").String() + "\x00" + strings.Join(dirs, ":")
	now := time.Now()
	c.mu.Lock()
	r, hit := c.m[key]
	c.mu.Unlock()
	if hit && now.Sub(r.at) < resolveTTL {
		return r.ok
	}
	ok := false
	if path, err := interp.LookPathDir(hc.Dir, hc.Env, name); err == nil {
		real, sys := toolargs.SystemBinary(path, dirs)
		ok = sys && filepath.Base(real) == name
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > 1024 {
		c.m = map[string]resolved{}
	}
	c.m[key] = resolved{ok, now}
	c.mu.Unlock()
	return ok
}
