package proxy

import (
	"strings"

	"github.com/shardwire/shardwire/router"
)

// queryEffects is what a statement does to session state that shardwire
// must carry from one server connection to the next.
type queryEffects struct {
	sets       []setChange
	discardAll bool
	pin        string // why the session cannot be pooled any more
	// steps, for a Query string of several statements, holds each
	// statement's own effects in order (nil for a statement without), so
	// that they are taken one CommandComplete at a time: a COMMIT or
	// ROLLBACK in the string then decides for the statements before it,
	// and an error for the statement it stops at and those after it.
	steps []*queryEffects
}

// setChange is one SET or RESET, or a savepoint operation that decides which
// SETs of a transaction block survive it. sql re-applies a SET on another
// connection; name is the parameter's, or the savepoint's.
type setChange struct {
	kind      changeKind
	name, sql string
}

type changeKind uint8

const (
	changeSet changeKind = iota
	changeReset
	changeResetAll
	changeSavepoint  // SAVEPOINT name
	changeRelease    // RELEASE [SAVEPOINT] name
	changeRollbackTo // ROLLBACK TO [SAVEPOINT] name
	changeDiscardAll // DISCARD ALL (made by survivingChanges from queryEffects.discardAll)
)

// rollsBackTo reports whether the statement has a ROLLBACK TO a savepoint.
func (e *queryEffects) rollsBackTo() bool {
	if e == nil {
		return false
	}
	for _, sc := range e.sets {
		if sc.kind == changeRollbackTo {
			return true
		}
	}
	return false
}

// survivingChanges returns, in order, the SETs and RESETs of a transaction
// block that outlive it, given every change the block's statements made in
// order (savepoint operations included): ROLLBACK TO a savepoint undoes the
// changes made since it, as Postgres does, and RELEASE keeps them. A
// savepoint name not seen (taken in a statement whose effects are unknown,
// such as a failed multi-statement Query) undoes nothing. dst is reused.
func survivingChanges(dst []setChange, effects ...[]*queryEffects) []setChange {
	type mark struct {
		name string
		kept int // len(dst) when the savepoint was taken
	}
	var stackBuf [8]mark
	stack := stackBuf[:0]
	find := func(name string) int {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].name == name {
				return i
			}
		}
		return -1
	}
	for _, list := range effects {
		for _, e := range list {
			for _, sc := range e.sets {
				switch sc.kind {
				case changeSavepoint:
					stack = append(stack, mark{name: sc.name, kept: len(dst)})
				case changeRelease:
					if i := find(sc.name); i >= 0 {
						stack = stack[:i]
					}
				case changeRollbackTo:
					if i := find(sc.name); i >= 0 {
						clear(dst[stack[i].kept:])
						dst = dst[:stack[i].kept]
						stack = stack[:i+1]
					}
				default:
					dst = append(dst, sc)
				}
			}
			if e.discardAll {
				dst = append(dst, setChange{kind: changeDiscardAll})
			}
		}
	}
	return dst
}

// stepsLeft returns the statements' effects not taken yet after done
// CommandCompletes (nil for a single statement, or more CommandCompletes
// than the lexer found statements).
func (e *queryEffects) stepsLeft(done int) []*queryEffects {
	if e == nil || done >= len(e.steps) {
		return nil
	}
	return e.steps[done:]
}

func (e *queryEffects) empty() bool {
	return e == nil || (len(e.sets) == 0 && !e.discardAll && e.pin == "")
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
	var steps []*queryEffects
	for i := range stmts {
		st := &stmts[i]
		nsets, discard := len(eff.sets), false
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
		case router.CmdSavepoint:
			eff.sets = append(eff.sets, setChange{kind: changeSavepoint, name: strings.Clone(st.Name)})
		case router.CmdRelease:
			eff.sets = append(eff.sets, setChange{kind: changeRelease, name: strings.Clone(st.Name)})
		case router.CmdRollbackTo:
			eff.sets = append(eff.sets, setChange{kind: changeRollbackTo, name: strings.Clone(st.Name)})
		case router.CmdSet, router.CmdReset:
			eff.addSet(st.Set)
			for _, more := range st.SetMore {
				eff.addSet(more)
			}
		case router.CmdDiscard:
			discard = st.All
			eff.discardAll = eff.discardAll || discard
		}
		if changed := len(eff.sets) > nsets || discard; !info.single && (changed || steps != nil) {
			if steps == nil {
				steps = make([]*queryEffects, i, len(stmts))
			}
			var step *queryEffects
			if changed {
				step = &queryEffects{sets: eff.sets[nsets:len(eff.sets):len(eff.sets)], discardAll: discard}
			}
			steps = append(steps, step)
		}
	}
	if !eff.empty() {
		// A copy, so that eff stays on the stack for the common
		// statement without effects.
		e := eff
		e.steps = steps
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
		e.sets = append(e.sets, setChange{kind: changeResetAll})
	case sc.Reset:
		e.sets = append(e.sets, setChange{kind: changeReset, name: strings.Clone(sc.Name)})
	case sc.Name != "":
		e.sets = append(e.sets, setChange{kind: changeSet, name: strings.Clone(sc.Name), sql: sc.SQL()})
	}
}
