package proxy

import (
	"strings"
)

// queryEffects is what a statement does to session state that shardwire
// must carry from one server connection to the next.
type queryEffects struct {
	sets          []setChange
	discardAll    bool
	deallocateAll bool
	pin           string // why the session cannot be pooled any more
}

type setChange struct {
	name, value     string
	reset, resetAll bool
}

// resets reports whether the statement resets parameters.
func (e *queryEffects) resets() bool {
	for _, sc := range e.sets {
		if sc.reset || sc.resetAll {
			return true
		}
	}
	return false
}

func (e *queryEffects) empty() bool {
	return e == nil || (len(e.sets) == 0 && !e.discardAll && !e.deallocateAll && e.pin == "")
}

// analyzeQuery inspects SQL text for session-state changes. It returns nil
// for the common case of a statement with none.
// TEMPORARY: replaced by router.Inspect once the router package lands.
func analyzeQuery(sql string) *queryEffects {
	l := strings.ToLower(strings.TrimSpace(sql))
	var eff queryEffects
	switch {
	case strings.HasPrefix(l, "set local"), strings.HasPrefix(l, "set transaction"), strings.HasPrefix(l, "set session characteristics"):
	case strings.HasPrefix(l, "set "):
		rest := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(sql[4:]), ";"))
		rest = strings.TrimPrefix(strings.TrimPrefix(rest, "SESSION "), "session ")
		name, val, ok := strings.Cut(rest, "=")
		if !ok {
			name, val, ok = strings.Cut(rest, " to ")
			if !ok {
				name, val, ok = strings.Cut(rest, " TO ")
			}
		}
		if ok {
			eff.sets = append(eff.sets, setChange{name: strings.ToLower(strings.TrimSpace(name)), value: strings.TrimSpace(val)})
		}
	case l == "reset all" || l == "reset all;":
		eff.sets = append(eff.sets, setChange{resetAll: true})
	case strings.HasPrefix(l, "reset "):
		eff.sets = append(eff.sets, setChange{name: strings.TrimSuffix(strings.TrimSpace(l[6:]), ";"), reset: true})
	case strings.HasPrefix(l, "discard all"):
		eff.discardAll = true
	case strings.HasPrefix(l, "deallocate all"):
		eff.deallocateAll = true
	case strings.HasPrefix(l, "prepare "):
		eff.pin = "PREPARE"
	case strings.HasPrefix(l, "listen "):
		eff.pin = "LISTEN"
	case strings.Contains(l, "pg_advisory_lock("):
		eff.pin = "advisory lock"
	}
	if eff.empty() {
		return nil
	}
	return &eff
}
