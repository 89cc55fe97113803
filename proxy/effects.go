package proxy

import (
	"strings"

	"github.com/shardwire/shardwire/router"
)

// queryEffects is what a statement does to session state that shardwire
// must carry from one server connection to the next.
type queryEffects struct {
	sets          []setChange
	discardAll    bool
	deallocateAll bool
	pin           string // why the session cannot be pooled any more
}

// setChange is one SET or RESET. sql re-applies it on another connection.
type setChange struct {
	name, sql       string
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

// analyzeQuery inspects SQL text for session-state changes with the
// router's lexer. It returns nil for the common case of a statement with
// none. Nothing it returns aliases sql.
func analyzeQuery(sql string) *queryEffects {
	return inspectQuery(sql).effects
}

// inspectQuery runs the lexer over a Query string once, for session state,
// hints and the statements the proxy answers itself.
func inspectQuery(sql string) queryInfo {
	var buf [1]router.Statement
	stmts := router.AppendInspect(buf[:0], sql)
	var info queryInfo
	var eff queryEffects
	if len(stmts) == 1 {
		info.single = true
		info.stmt = stmts[0]
	}
	for i := range stmts {
		st := &stmts[i]
		if st.Hints.Any() {
			h := st.Hints
			if info.hints.Role == router.RoleAuto {
				info.hints.Role = h.Role
			}
			if info.hints.Shard == "" {
				info.hints.Shard = strings.Clone(h.Shard)
			}
			if !info.hints.HasKey && h.HasKey {
				info.hints.Key, info.hints.HasKey = strings.Clone(h.Key), true
			}
			if info.hints.Err == nil {
				info.hints.Err = h.Err
			}
		}
		if st.Pin != "" && eff.pin == "" {
			eff.pin = st.Pin
		}
		switch st.Command {
		case router.CmdSet, router.CmdReset:
			eff.addSet(st.Set)
			for _, more := range st.SetMore {
				eff.addSet(more)
			}
		case router.CmdDiscard:
			if st.All {
				eff.discardAll = true
			}
		case router.CmdDeallocate:
			if st.All {
				eff.deallocateAll = true
			}
		}
	}
	if !eff.empty() {
		// A copy, so that eff stays on the stack for the common
		// statement without effects.
		e := eff
		info.effects = &e
	}
	return info
}

func (e *queryEffects) addSet(sc router.SetCommand) {
	// SET LOCAL and SET TRANSACTION end with the transaction: not session state.
	if sc.Local || sc.Transaction {
		return
	}
	switch {
	case sc.ResetAll:
		e.sets = append(e.sets, setChange{resetAll: true})
	case sc.Reset:
		e.sets = append(e.sets, setChange{name: strings.Clone(sc.Name), reset: true})
	case sc.Name != "":
		e.sets = append(e.sets, setChange{name: strings.Clone(sc.Name), sql: sc.SQL()})
	}
}
