package router

import "strings"

// Command is the kind of a statement, as far as session tracking and
// routing need to know.
type Command uint8

// Commands. CmdOther (the zero value) is any statement not listed.
const (
	CmdOther              Command = iota
	CmdEmpty                      // no statement at all (only spaces, comments or ;)
	CmdSelect                     // SELECT, VALUES, TABLE, (SELECT …), WITH … SELECT
	CmdInsert                     // also WITH … INSERT
	CmdUpdate                     // also WITH … UPDATE
	CmdDelete                     // also WITH … DELETE
	CmdMerge                      // MERGE
	CmdBegin                      // BEGIN, START TRANSACTION
	CmdCommit                     // COMMIT, END
	CmdRollback                   // ROLLBACK, ABORT
	CmdSavepoint                  // SAVEPOINT name
	CmdRelease                    // RELEASE [SAVEPOINT] name
	CmdRollbackTo                 // ROLLBACK TO [SAVEPOINT] name
	CmdPrepareTransaction         // PREPARE TRANSACTION 'gid' (ends the transaction block)
	CmdCommitPrepared             // COMMIT PREPARED 'gid' (not in a transaction block)
	CmdRollbackPrepared           // ROLLBACK PREPARED 'gid'
	CmdSet                        // SET …
	CmdReset                      // RESET …
	CmdDiscard                    // DISCARD ALL|PLANS|SEQUENCES|TEMP
	CmdShow                       // SHOW …
	CmdPrepare                    // SQL-level PREPARE name AS …
	CmdExecute                    // EXECUTE name
	CmdDeallocate                 // DEALLOCATE [PREPARE] name|ALL
	CmdListen                     // LISTEN channel
	CmdUnlisten                   // UNLISTEN channel|*
	CmdNotify                     // NOTIFY channel
	CmdDeclare                    // DECLARE cursor …
	CmdClose                      // CLOSE cursor|ALL
	CmdFetch                      // FETCH, MOVE
	CmdCopy                       // COPY
	CmdCreate                     // CREATE …
	CmdAlter                      // ALTER …
	CmdDrop                       // DROP …
	CmdExplain                    // EXPLAIN …
)

var commandNames = [...]string{
	CmdOther:              "OTHER",
	CmdEmpty:              "EMPTY",
	CmdSelect:             "SELECT",
	CmdInsert:             "INSERT",
	CmdUpdate:             "UPDATE",
	CmdDelete:             "DELETE",
	CmdMerge:              "MERGE",
	CmdBegin:              "BEGIN",
	CmdCommit:             "COMMIT",
	CmdRollback:           "ROLLBACK",
	CmdSavepoint:          "SAVEPOINT",
	CmdRelease:            "RELEASE",
	CmdRollbackTo:         "ROLLBACK TO",
	CmdPrepareTransaction: "PREPARE TRANSACTION",
	CmdCommitPrepared:     "COMMIT PREPARED",
	CmdRollbackPrepared:   "ROLLBACK PREPARED",
	CmdSet:                "SET",
	CmdReset:              "RESET",
	CmdDiscard:            "DISCARD",
	CmdShow:               "SHOW",
	CmdPrepare:            "PREPARE",
	CmdExecute:            "EXECUTE",
	CmdDeallocate:         "DEALLOCATE",
	CmdListen:             "LISTEN",
	CmdUnlisten:           "UNLISTEN",
	CmdNotify:             "NOTIFY",
	CmdDeclare:            "DECLARE",
	CmdClose:              "CLOSE",
	CmdFetch:              "FETCH",
	CmdCopy:               "COPY",
	CmdCreate:             "CREATE",
	CmdAlter:              "ALTER",
	CmdDrop:               "DROP",
	CmdExplain:            "EXPLAIN",
}

func (c Command) String() string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return "Command(?)"
}

// TxAccess is a transaction access mode given explicitly.
type TxAccess uint8

// Access modes. TxAccessDefault means the statement did not say.
const (
	TxAccessDefault TxAccess = iota
	TxReadOnly
	TxReadWrite
)

func (a TxAccess) String() string {
	switch a {
	case TxReadOnly:
		return "READ ONLY"
	case TxReadWrite:
		return "READ WRITE"
	}
	return "DEFAULT"
}

// Pin reasons: the statement creates state that lives in one server
// connection beyond the transaction, so in transaction pooling the client
// must keep that connection (see the package documentation).
const (
	PinPrepare      = "SQL PREPARE"
	PinListen       = "LISTEN"
	PinAdvisoryLock = "session-level advisory lock"
	PinWithHold     = "DECLARE ... WITH HOLD cursor"
	PinTemp         = "temporary object"
	PinSetConfig    = "set_config(..., is_local => false)"
	PinLoad         = "LOAD"
)

// SetCommand is what a SET or RESET statement does to a setting.
type SetCommand struct {
	// Name is the setting's canonical name: lower case, dotted for custom
	// settings; SET TIME ZONE is "timezone", SET NAMES "client_encoding",
	// SET SCHEMA "search_path", SET ROLE "role", SET SESSION AUTHORIZATION
	// "session_authorization", SET XML OPTION "xmloption", SET TRANSACTION
	// SNAPSHOT "transaction_snapshot". Empty for RESET ALL and SET TRANSACTION.
	Name string
	// Value is the new value as SQL text, such that "SET <Name> = <Value>"
	// applies it again (but see SQL, which also covers the forms that need
	// their own syntax). A list such as a search_path keeps its commas.
	// Empty when Reset or ResetAll. For SET TRANSACTION (Name "") it is the
	// transaction mode list, e.g. "ISOLATION LEVEL SERIALIZABLE, READ ONLY".
	Value string
	// Local is SET LOCAL: the change ends with the transaction, so it is not
	// session state.
	Local bool
	// Reset is RESET Name, SET Name TO DEFAULT, SET TIME ZONE LOCAL,
	// SET ROLE NONE and the like: back to the session default.
	Reset bool
	// ResetAll is RESET ALL. Like PostgreSQL, it leaves role and
	// session_authorization alone (DISCARD ALL resets those too).
	ResetAll bool
	// Transaction marks changes scoped to the current transaction, not the
	// session: SET TRANSACTION …, SET transaction_isolation/_read_only/
	// _deferrable/_snapshot, RESET TRANSACTION ISOLATION LEVEL.
	Transaction bool
	// TxAccess is READ ONLY / READ WRITE as set by SET TRANSACTION, SET
	// SESSION CHARACTERISTICS AS TRANSACTION (Name then is
	// default_transaction_read_only), SET transaction_read_only or SET
	// default_transaction_read_only.
	TxAccess TxAccess
}

// SQL returns a statement that applies c to a session: "SET name = value",
// or the special syntax a few settings need. For Reset it returns "RESET
// name", for ResetAll "RESET ALL" and for SET TRANSACTION "SET TRANSACTION
// modes". Names are quoted, so a custom setting whose part is a reserved
// word (app."user") still works.
func (c SetCommand) SQL() string {
	switch {
	case c.ResetAll:
		return "RESET ALL"
	case c.Transaction && c.Name == "":
		return "SET TRANSACTION " + c.Value
	case c.Reset && c.Name == "session_authorization":
		return "RESET SESSION AUTHORIZATION"
	case c.Reset:
		return "RESET " + quoteName(c.Name)
	}
	scope := "SET "
	if c.Local {
		scope = "SET LOCAL "
	}
	switch c.Name {
	case "transaction_snapshot": // not a real setting: only this syntax sets it
		return "SET TRANSACTION SNAPSHOT " + c.Value
	case "session_authorization":
		return scope + "SESSION AUTHORIZATION " + c.Value
	case "timezone":
		if len(c.Value) >= 8 && eqFold(c.Value[:8], "interval") {
			return scope + "TIME ZONE " + c.Value
		}
	}
	return scope + quoteName(c.Name) + " = " + c.Value
}

// quoteName quotes each dot-separated part of a setting name.
func quoteName(name string) string {
	var b strings.Builder
	b.Grow(len(name) + 4)
	for i, part := range strings.Split(name, ".") {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(part, `"`, `""`))
		b.WriteByte('"')
	}
	return b.String()
}

// Statement is what Inspect learned about one statement of a Query string.
type Statement struct {
	Command Command
	// Start and End delimit the statement in the inspected text, from its
	// first token to the end of its last (comments around it and the ;
	// excluded).
	Start, End int
	// Name is the object a command names: the savepoint, prepared statement,
	// cursor or channel; DISCARD's and SHOW's target (lower case).
	Name string
	// All is DISCARD ALL, DEALLOCATE ALL, CLOSE ALL or UNLISTEN *.
	All bool
	// TxAccess is BEGIN/START TRANSACTION READ ONLY or READ WRITE.
	TxAccess TxAccess
	// Chain is COMMIT/ROLLBACK AND CHAIN: a new transaction starts at once.
	Chain bool
	// Set is the setting changed by CmdSet and CmdReset.
	Set SetCommand
	// SetMore holds the further settings of SET SESSION CHARACTERISTICS AS
	// TRANSACTION with several modes; nil otherwise.
	SetMore []SetCommand
	// Pin is why the statement ties the client to its server connection
	// (one of the Pin constants), or "".
	Pin string
	// Hints are the statement's /* shardwire: … */ comments.
	Hints Hints
}

// Text returns the statement's text in sql, the string given to Inspect.
func (s *Statement) Text(sql string) string {
	if s.Start < 0 || s.End > len(sql) || s.Start > s.End {
		return ""
	}
	return sql[s.Start:s.End]
}

// Inspection is the result of Inspect: one Statement per statement of the
// Query string, in order (at least one: a string without statements yields
// one CmdEmpty).
type Inspection struct {
	Statements []Statement
}

// Pin returns the first pin reason of any statement, or "".
func (in Inspection) Pin() string {
	for i := range in.Statements {
		if in.Statements[i].Pin != "" {
			return in.Statements[i].Pin
		}
	}
	return ""
}

// Inspect analyses a simple Query string (one or more statements separated
// by ;) with the lexer alone, for session-state tracking: it is cheap enough
// to run on every query. It never fails; text it cannot make sense of is
// CmdOther.
func Inspect(sql string) Inspection {
	return Inspection{Statements: AppendInspect(make([]Statement, 0, 1), sql)}
}

// AppendInspect is Inspect appending to a caller-owned slice; with enough
// capacity it does not allocate for ordinary statements.
func AppendInspect(dst []Statement, sql string) []Statement {
	if st, ok := inspectPlain(sql); ok {
		return append(dst, st)
	}
	return appendInspectLexed(dst, sql)
}

// appendInspectLexed is AppendInspect through the lexer.
func appendInspectLexed(dst []Statement, sql string) []Statement {
	var s stmtScanner
	s.lx.Reset(sql)
	s.sql = sql
	n0 := len(dst)
	for !s.eof {
		s.begin()
		first := s.next()
		if first.Kind == TokEOF {
			continue // empty statement: nothing between two ;
		}
		s.cur.Start = first.Start
		s.dispatch(first)
		s.drain()
		s.cur.End = s.tok.End
		dst = append(dst, s.cur)
	}
	if len(dst) == n0 {
		dst = append(dst, Statement{Command: CmdEmpty, Start: 0, End: 0})
	}
	return dst
}

// inspectPlain answers, without the lexer, for the statements most queries
// are: one SELECT, UPDATE or DELETE made only of words, numbers, spaces and
// the punctuation , = < > . * + - (so no call, subquery, literal, quoted
// name, comment, cast, parameter or second statement) and without INTO. Such
// a statement has nothing else to inspect. ok is false for anything else,
// which the lexer then reads; FuzzInspect checks that both agree.
func inspectPlain(sql string) (st Statement, ok bool) {
	i := 0
	for i < len(sql) && plainClass[sql[i]] == plainSpace {
		i++
	}
	start := i
	for i < len(sql) && isLetter(sql[i]) {
		i++
	}
	switch w := sql[start:i]; {
	case eqFold(w, "select"):
		st.Command = CmdSelect
	case eqFold(w, "update"):
		st.Command = CmdUpdate
	case eqFold(w, "delete"):
		st.Command = CmdDelete
	default:
		return Statement{}, false
	}
	if i < len(sql) && plainClass[sql[i]] != plainSpace {
		return Statement{}, false // SELECTx, SELECT*…: left to the lexer
	}
	end := i
	for i < len(sql) {
		switch plainClass[sql[i]] {
		case plainSpace:
			i++
			continue
		case plainWord:
			w := i
			for i++; i < len(sql) && plainClass[sql[i]] >= plainWord; i++ {
			}
			if i-w == 4 && eqFold(sql[w:i], "into") {
				return Statement{}, false
			}
		case plainDigit:
			for i++; i < len(sql) && plainClass[sql[i]] == plainDigit; i++ {
			}
			if i < len(sql) && plainClass[sql[i]] == plainWord {
				return Statement{}, false // 1e5, 0x1F, 0INTO: how it splits is the lexer's call
			}
		case plainPunct:
			i++
		case plainMinus:
			if i+1 < len(sql) && sql[i+1] == '-' {
				return Statement{}, false // a comment
			}
			i++
		case plainSemicolon:
			for i++; i < len(sql); i++ {
				if plainClass[sql[i]] != plainSpace {
					return Statement{}, false
				}
			}
			continue
		default:
			return Statement{}, false
		}
		end = i
	}
	st.Start, st.End = start, end
	return st, true
}

// Byte classes for inspectPlain; anything else (0) is left to the lexer.
const (
	plainOther uint8 = iota
	plainSpace
	plainPunct
	plainMinus
	plainSemicolon
	plainWord  // letters and _ (and digits after the first)
	plainDigit // must stay after plainWord: words continue with digits
)

var plainClass = func() (t [256]uint8) {
	for _, c := range " \t\n\r" {
		t[c] = plainSpace
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = plainDigit
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = plainWord, plainWord
	}
	t['_'] = plainWord
	for _, c := range ",=<>.*+" {
		t[c] = plainPunct
	}
	t['-'] = plainMinus
	t[';'] = plainSemicolon
	return t
}()

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// stmtScanner walks the significant tokens of one statement at a time.
type stmtScanner struct {
	lx  Lexer
	sql string
	cur Statement

	tok, prev, prev2 Token // the last three significant tokens
	done, eof        bool  // statement ended; input ended
	comments         int   // comments skipped so far (value text checks)

	atomic      bool // CREATE FUNCTION/PROCEDURE: track BEGIN ATOMIC … END
	atomicDepth int
	with        bool // WITH …: the verb is still to come
	depth       int  // parenthesis depth at which drain starts
}

func (s *stmtScanner) begin() {
	s.cur = Statement{}
	s.done = false
	s.tok, s.prev, s.prev2 = Token{}, Token{}, Token{}
	s.atomic, s.atomicDepth = false, 0
	s.with, s.depth = false, 0
}

// next returns the statement's next significant token, or TokEOF at its
// end (a ; outside BEGIN ATOMIC … END, or the end of input). Comments are
// read for hints.
func (s *stmtScanner) next() Token {
	if s.done {
		return Token{Kind: TokEOF, Start: s.tok.End, End: s.tok.End}
	}
	for {
		t := s.lx.Next()
		switch t.Kind {
		case TokComment:
			s.comments++
			if t.End-t.Start >= len("--shardwire:") {
				s.cur.Hints.addHint(s.sql[t.Start:t.End])
			}
			continue
		case TokEOF:
			s.done, s.eof = true, true
			return Token{Kind: TokEOF, Start: s.tok.End, End: s.tok.End}
		case TokPunct:
			if s.sql[t.Start] == ';' && s.atomicDepth == 0 {
				s.done = true
				return Token{Kind: TokEOF, Start: s.tok.End, End: s.tok.End}
			}
		case TokIdent:
			if s.atomic {
				s.trackAtomic(t)
			}
		}
		s.prev2, s.prev, s.tok = s.prev, s.tok, t
		return t
	}
}

// trackAtomic follows BEGIN … END nesting in a CREATE FUNCTION or
// PROCEDURE, whose SQL-standard body (BEGIN ATOMIC) contains semicolons,
// the way psql does.
func (s *stmtScanner) trackAtomic(t Token) {
	w := s.sql[t.Start:t.End]
	switch {
	case eqFold(w, "begin"):
		s.atomicDepth++
	case eqFold(w, "case") && s.atomicDepth > 0:
		s.atomicDepth++
	case eqFold(w, "end") && s.atomicDepth > 0:
		s.atomicDepth--
	}
}

// kw reports whether t is the unquoted keyword w (lower case).
func (s *stmtScanner) kw(t Token, w string) bool {
	return t.Kind == TokIdent && eqFold(s.sql[t.Start:t.End], w)
}

func (s *stmtScanner) punct(t Token, p byte) bool {
	return t.Kind == TokPunct && t.End-t.Start == 1 && s.sql[t.Start] == p
}

// dispatch sets the command from the first token and reads what the
// command needs; drain reads the rest.
func (s *stmtScanner) dispatch(first Token) {
	st := &s.cur
	if s.punct(first, '(') {
		st.Command = CmdSelect
		s.depth = 1
		return
	}
	if first.Kind != TokIdent {
		return // CmdOther
	}
	w := s.sql[first.Start:first.End]
	if len(w) < 3 || len(w) > 10 {
		return
	}
	switch w[0] | 0x20 {
	case 'a':
		switch {
		case eqFold(w, "alter"):
			st.Command = CmdAlter
		case eqFold(w, "abort"):
			st.Command = CmdRollback
			s.parseEnd()
		}
	case 'b':
		if eqFold(w, "begin") {
			st.Command = CmdBegin
			st.TxAccess = s.parseTxModes(s.next())
		}
	case 'c':
		switch {
		case eqFold(w, "commit"):
			st.Command = CmdCommit
			if s.kw(s.next(), "prepared") {
				st.Command = CmdCommitPrepared
				return
			}
			s.parseEnd()
		case eqFold(w, "copy"):
			st.Command = CmdCopy
		case eqFold(w, "create"):
			st.Command = CmdCreate
			s.parseCreate()
		case eqFold(w, "close"):
			st.Command = CmdClose
			s.parseName()
		}
	case 'd':
		switch {
		case eqFold(w, "delete"):
			st.Command = CmdDelete
		case eqFold(w, "drop"):
			st.Command = CmdDrop
		case eqFold(w, "discard"):
			st.Command = CmdDiscard
			s.parseName()
		case eqFold(w, "deallocate"):
			st.Command = CmdDeallocate
			t := s.next()
			if s.kw(t, "prepare") {
				t = s.next()
			}
			s.nameFrom(t)
		case eqFold(w, "declare"):
			st.Command = CmdDeclare
			s.parseDeclare()
		}
	case 'e':
		switch {
		case eqFold(w, "end"):
			st.Command = CmdCommit
			s.parseEnd()
		case eqFold(w, "execute"):
			st.Command = CmdExecute
			s.parseName()
		case eqFold(w, "explain"):
			st.Command = CmdExplain
		}
	case 'f':
		if eqFold(w, "fetch") {
			st.Command = CmdFetch
		}
	case 'i':
		if eqFold(w, "insert") {
			st.Command = CmdInsert
		}
	case 'l':
		switch {
		case eqFold(w, "listen"):
			st.Command = CmdListen
			st.Pin = PinListen
			s.parseName()
		case eqFold(w, "load"):
			st.Pin = PinLoad
		}
	case 'm':
		switch {
		case eqFold(w, "merge"):
			st.Command = CmdMerge
		case eqFold(w, "move"):
			st.Command = CmdFetch
		}
	case 'n':
		if eqFold(w, "notify") {
			st.Command = CmdNotify
			s.parseName()
		}
	case 'p':
		if eqFold(w, "prepare") {
			t := s.next()
			if s.kw(t, "transaction") {
				st.Command = CmdPrepareTransaction
				return
			}
			st.Command = CmdPrepare
			st.Pin = PinPrepare
			s.nameFrom(t)
		}
	case 'r':
		switch {
		case eqFold(w, "rollback"):
			s.parseRollback()
		case eqFold(w, "release"):
			st.Command = CmdRelease
			t := s.next()
			if s.kw(t, "savepoint") {
				t = s.next()
			}
			s.nameFrom(t)
		case eqFold(w, "reset"):
			st.Command = CmdReset
			s.parseReset()
		}
	case 's':
		switch {
		case eqFold(w, "select"):
			st.Command = CmdSelect
		case eqFold(w, "set"):
			st.Command = CmdSet
			s.parseSet()
		case eqFold(w, "show"):
			st.Command = CmdShow
			s.parseShow()
		case eqFold(w, "savepoint"):
			st.Command = CmdSavepoint
			s.parseName()
		case eqFold(w, "start"):
			if s.kw(s.next(), "transaction") {
				st.Command = CmdBegin
				st.TxAccess = s.parseTxModes(s.next())
			}
		}
	case 't':
		if eqFold(w, "table") {
			st.Command = CmdSelect
		}
	case 'u':
		switch {
		case eqFold(w, "update"):
			st.Command = CmdUpdate
		case eqFold(w, "unlisten"):
			st.Command = CmdUnlisten
			t := s.next()
			if t.Kind == TokOp && s.sql[t.Start:t.End] == "*" {
				st.All = true
			} else {
				s.nameFrom(t)
			}
		}
	case 'v':
		if eqFold(w, "values") {
			st.Command = CmdSelect
		}
	case 'w':
		if eqFold(w, "with") {
			// drain finds the main statement's verb after the CTEs.
			st.Command = CmdSelect
			s.with = true
		}
	}
}

// parseEnd reads the rest of COMMIT/END/ROLLBACK/ABORT: AND [NO] CHAIN.
func (s *stmtScanner) parseEnd() {
	for t := s.next(); t.Kind != TokEOF; t = s.next() {
		if s.kw(t, "chain") {
			s.cur.Chain = !s.kw(s.prev, "no")
		}
	}
}

func (s *stmtScanner) parseRollback() {
	st := &s.cur
	st.Command = CmdRollback
	t := s.next()
	if s.kw(t, "prepared") {
		st.Command = CmdRollbackPrepared
		return
	}
	if s.kw(t, "work") || s.kw(t, "transaction") {
		t = s.next()
	}
	if s.kw(t, "to") {
		st.Command = CmdRollbackTo
		t = s.next()
		if s.kw(t, "savepoint") {
			t = s.next()
		}
		s.nameFrom(t)
		return
	}
	for ; t.Kind != TokEOF; t = s.next() {
		if s.kw(t, "chain") {
			st.Chain = !s.kw(s.prev, "no")
		}
	}
}

// parseTxModes reads a transaction mode list starting at t (after BEGIN
// [WORK|TRANSACTION], START TRANSACTION or SET TRANSACTION) and returns the
// access mode it sets.
func (s *stmtScanner) parseTxModes(t Token) TxAccess {
	acc := TxAccessDefault
	for ; t.Kind != TokEOF; t = s.next() {
		if !s.kw(t, "read") {
			continue
		}
		// ISOLATION LEVEL READ COMMITTED also has READ: only READ ONLY and
		// READ WRITE count.
		t = s.next()
		switch {
		case s.kw(t, "only"):
			acc = TxReadOnly
		case s.kw(t, "write"):
			acc = TxReadWrite
		}
	}
	return acc
}

// parseName reads the statement's object name from the next token.
func (s *stmtScanner) parseName() { s.nameFrom(s.next()) }

func (s *stmtScanner) nameFrom(t Token) {
	if s.kw(t, "all") {
		s.cur.All = true
		return
	}
	s.cur.Name = identName(s.sql, t)
}

// identName returns an identifier's name: unquoted ones lower-cased,
// quoted ones with "" unescaped. Other tokens give "".
func identName(sql string, t Token) string {
	text := sql[t.Start:t.End]
	switch {
	case t.Kind == TokIdent:
		return lowerASCII(text)
	case t.Kind == TokQuotedIdent && t.Flags&(FlagUnicode|FlagUnterminated) == 0:
		body := text[1 : len(text)-1]
		if strings.Contains(body, `""`) {
			return strings.ReplaceAll(body, `""`, `"`)
		}
		return body
	case t.Kind == TokQuotedIdent:
		return text
	}
	return ""
}

// lowerASCII lower-cases ASCII letters, allocating only if s has any upper
// case letter.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return string(appendLower(make([]byte, 0, len(s)), s))
		}
	}
	return s
}

// parseDeclare reads DECLARE name … CURSOR [WITH[OUT] HOLD] FOR query.
func (s *stmtScanner) parseDeclare() {
	s.parseName()
	for t := s.next(); t.Kind != TokEOF; t = s.next() {
		switch {
		case s.kw(t, "for"):
			return
		case s.kw(t, "hold") && s.kw(s.prev, "with"):
			s.cur.Pin = PinWithHold
		}
	}
}

// parseCreate reads CREATE [OR REPLACE] [GLOBAL|LOCAL] [TEMP|TEMPORARY] ….
// Temporary objects pin unless the table is ON COMMIT DROP; drain spots
// objects created in the pg_temp schema.
func (s *stmtScanner) parseCreate() {
	t := s.next()
	if s.kw(t, "or") {
		s.next() // REPLACE
		t = s.next()
	}
	if s.kw(t, "global") || s.kw(t, "local") {
		t = s.next()
	}
	switch {
	case s.kw(t, "temp") || s.kw(t, "temporary"):
		s.cur.Pin = PinTemp
	case s.kw(t, "function") || s.kw(t, "procedure"):
		s.atomic = true
	}
}

// parseShow reads SHOW name | TIME ZONE | TRANSACTION ISOLATION LEVEL |
// SESSION AUTHORIZATION | ALL.
func (s *stmtScanner) parseShow() {
	t := s.next()
	switch {
	case s.kw(t, "all"):
		s.cur.All = true
	case s.kw(t, "time"):
		s.cur.Name = "timezone"
	case s.kw(t, "transaction"):
		s.cur.Name = "transaction_isolation"
	case s.kw(t, "session"):
		s.cur.Name = "session_authorization"
	default:
		s.cur.Name = s.settingName(t)
	}
}

// settingName reads a possibly dotted setting name starting at t and
// returns it lower-cased (setting names are case-insensitive, quoted or not).
func (s *stmtScanner) settingName(t Token) string {
	name := identName(s.sql, t)
	if name == "" {
		return ""
	}
	var b []byte // only for dotted names
	for {
		dot := s.next()
		if !s.punct(dot, '.') {
			s.unread(dot)
			break
		}
		part := s.next()
		p := identName(s.sql, part)
		if p == "" {
			s.unread(part)
			break
		}
		if b == nil {
			b = append(b, name...)
		}
		b = append(append(b, '.'), p...)
	}
	if b != nil {
		name = string(b)
	}
	return strings.ToLower(name)
}

// unread pushes back the token just returned by next, so the following
// next returns it again. It is used only while reading SET, RESET and SHOW,
// where no BEGIN ATOMIC tracking is active.
func (s *stmtScanner) unread(t Token) {
	if t.Kind == TokEOF {
		return
	}
	s.lx.pos = t.Start
	s.tok, s.prev = s.prev, s.prev2
}

// parseSet reads SET [SESSION|LOCAL] ….
func (s *stmtScanner) parseSet() {
	set := &s.cur.Set
	t := s.next()
	switch {
	case s.kw(t, "local"):
		set.Local = true
		t = s.next()
	case s.kw(t, "session"):
		u := s.next()
		if !s.kw(u, "authorization") && !s.kw(u, "characteristics") && !s.kw(u, "session") {
			t = u // SET SESSION name = …
			break
		}
		t = u
	}
	switch {
	case s.kw(t, "session"):
		// SET [scope] SESSION AUTHORIZATION / CHARACTERISTICS.
		u := s.next()
		if s.kw(u, "characteristics") {
			s.parseCharacteristics()
			return
		}
		if !s.kw(u, "authorization") {
			set.Name = s.settingName(t)
			s.setValue(u)
			return
		}
		set.Name = "session_authorization"
		s.setValue(s.next())
	case s.kw(t, "authorization"):
		set.Name = "session_authorization"
		s.setValue(s.next())
	case s.kw(t, "characteristics"):
		s.parseCharacteristics()
	case s.kw(t, "transaction"):
		u := s.next()
		if s.kw(u, "snapshot") {
			set.Name = "transaction_snapshot"
			set.Transaction = true
			s.setValue(s.next())
			return
		}
		if s.punct(u, '=') || s.kw(u, "to") {
			break // not valid SQL; leave it to the server
		}
		set.Transaction = true
		comments := s.comments
		set.TxAccess = s.parseTxModes(u)
		if u.Kind != TokEOF {
			set.Value = s.textOf(u, s.tok, s.comments != comments)
		}
	case s.kw(t, "time"):
		u := s.next()
		if !s.kw(u, "zone") {
			set.Name = s.settingName(t)
			s.setValue(u)
			return
		}
		set.Name = "timezone"
		v := s.next()
		if s.kw(v, "local") {
			set.Reset = true
			s.drain()
			return
		}
		s.setValue(v)
	case s.kw(t, "names"):
		set.Name = "client_encoding"
		s.setValue(s.next())
		if set.Value == "" && !set.Reset {
			set.Reset = true // SET NAMES alone: the default encoding
		}
	case s.kw(t, "schema"):
		set.Name = "search_path"
		s.setValue(s.next())
	case s.kw(t, "role"):
		set.Name = "role"
		s.setValue(s.next())
	case s.kw(t, "xml"):
		u := s.next()
		if !s.kw(u, "option") {
			set.Name = s.settingName(t)
			s.setValue(u)
			return
		}
		set.Name = "xmloption"
		s.setValue(s.next())
	default:
		set.Name = s.settingName(t)
		if set.Name == "" {
			return // not valid SQL
		}
		u := s.next()
		if s.kw(u, "from") && s.kw(s.next(), "current") {
			// SET name FROM CURRENT keeps the current value: nothing changes.
			set.Value = ""
			set.Name = ""
			return
		}
		s.setValue(u)
	}
	if set.Name == "" {
		return
	}
	switch set.Name {
	case "transaction_isolation", "transaction_read_only", "transaction_deferrable":
		set.Transaction = true
		fallthrough
	case "default_transaction_read_only":
		if set.Name == "transaction_read_only" || set.Name == "default_transaction_read_only" {
			if on, ok := parseBool(set.Value); ok {
				set.TxAccess = TxReadWrite
				if on {
					set.TxAccess = TxReadOnly
				}
			}
		}
	}
}

// setValue reads a SET value starting at t (an optional TO or = first)
// to the end of the statement.
func (s *stmtScanner) setValue(t Token) {
	set := &s.cur.Set
	if s.kw(t, "to") || (t.Kind == TokOp && s.sql[t.Start:t.End] == "=") {
		t = s.next()
	}
	if t.Kind == TokEOF {
		return
	}
	first, comments := t, s.comments
	last := t
	for u := s.next(); u.Kind != TokEOF; u = s.next() {
		last = u
	}
	if first == last && (s.kw(first, "default") ||
		(set.Name == "role" && s.kw(first, "none"))) {
		set.Reset = true
		return
	}
	set.Value = s.textOf(first, last, s.comments != comments)
}

// textOf returns the statement text from first to last. If comments may
// lie between them, it rebuilds the text without them, so that a --
// comment cannot swallow what follows when the text is applied again.
func (s *stmtScanner) textOf(first, last Token, comments bool) string {
	if !comments {
		return s.sql[first.Start:last.End]
	}
	var b []byte
	var lx Lexer
	lx.Reset(s.sql[:last.End])
	lx.pos = first.Start
	var prev shapeTok
	for u := lx.Next(); u.Kind != TokEOF; u = lx.Next() {
		if u.Kind == TokComment {
			continue
		}
		text := s.sql[u.Start:u.End]
		cur := shapeTok{kind: u.Kind, first: text[0], last: text[len(text)-1], n: len(text)}
		if needSpace(prev, cur) {
			b = append(b, ' ')
		}
		b = append(b, text...)
		prev = cur
	}
	return string(b)
}

// parseCharacteristics reads SET SESSION CHARACTERISTICS AS TRANSACTION
// modes into default_transaction_* settings.
func (s *stmtScanner) parseCharacteristics() {
	var sets []SetCommand
	add := func(name, value string) {
		c := SetCommand{Name: name, Value: value}
		if name == "default_transaction_read_only" {
			c.TxAccess = TxReadWrite
			if value == "on" {
				c.TxAccess = TxReadOnly
			}
		}
		sets = append(sets, c)
	}
	for t := s.next(); t.Kind != TokEOF; t = s.next() {
		switch {
		case s.kw(t, "isolation"):
			s.next() // LEVEL
			u := s.next()
			switch {
			case s.kw(u, "serializable"):
				add("default_transaction_isolation", "'serializable'")
			case s.kw(u, "repeatable"):
				add("default_transaction_isolation", "'repeatable read'")
			case s.kw(u, "read"):
				v := s.next()
				if s.kw(v, "uncommitted") {
					add("default_transaction_isolation", "'read uncommitted'")
				} else {
					add("default_transaction_isolation", "'read committed'")
				}
			}
		case s.kw(t, "read"):
			u := s.next()
			if s.kw(u, "only") {
				add("default_transaction_read_only", "on")
			} else if s.kw(u, "write") {
				add("default_transaction_read_only", "off")
			}
		case s.kw(t, "deferrable"):
			if s.kw(s.prev, "not") {
				add("default_transaction_deferrable", "off")
			} else {
				add("default_transaction_deferrable", "on")
			}
		}
	}
	if len(sets) == 0 {
		return
	}
	s.cur.Set = sets[0]
	if len(sets) > 1 {
		s.cur.SetMore = sets[1:]
	}
}

// parseReset reads RESET name | ALL | TIME ZONE | TRANSACTION ISOLATION
// LEVEL | SESSION AUTHORIZATION.
func (s *stmtScanner) parseReset() {
	set := &s.cur.Set
	t := s.next()
	switch {
	case s.kw(t, "all"):
		set.ResetAll = true
		return
	case s.kw(t, "time"):
		set.Name = "timezone"
	case s.kw(t, "transaction"):
		set.Name = "transaction_isolation"
		set.Transaction = true
	case s.kw(t, "session"):
		set.Name = "session_authorization"
	default:
		set.Name = s.settingName(t)
		switch set.Name {
		case "transaction_isolation", "transaction_read_only", "transaction_deferrable":
			set.Transaction = true
		}
	}
	set.Reset = set.Name != ""
}

// parseBool parses a setting value as PostgreSQL's parse_bool does
// (unambiguous prefixes of true/false/yes/no, on/off, 1/0), quotes removed.
func parseBool(v string) (value, ok bool) {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		v = v[1 : len(v)-1]
	}
	v = strings.ToLower(strings.TrimSpace(v))
	switch {
	case v == "":
		return false, false
	case strings.HasPrefix("true", v), strings.HasPrefix("yes", v), v == "on", v == "1":
		return true, true
	case strings.HasPrefix("false", v), strings.HasPrefix("no", v), v == "off" || v == "of", v == "0":
		return false, true
	}
	return false, false
}

// drain reads the statement to its end, looking for what pins a session
// wherever it appears: calls of session-level advisory lock functions and
// of set_config with is_local other than true, SELECT … INTO TEMP, and
// objects created in pg_temp. After WITH it also finds the main verb.
func (s *stmtScanner) drain() {
	depth := s.depth
	var sc setConfigCall
	create := s.cur.Command == CmdCreate
	afterInto := false
	onCommitDrop := false
	for t := s.next(); t.Kind != TokEOF; t = s.next() {
		if sc.depth > 0 && depth == sc.depth && !s.punct(t, ')') {
			sc.see(s, t)
		}
		switch t.Kind {
		case TokPunct:
			switch s.sql[t.Start] {
			case '(':
				depth++
				if sc.depth == 0 && s.isCallee(s.prev, "set_config") {
					sc = setConfigCall{depth: depth}
				} else {
					s.checkCall()
				}
			case ')':
				if sc.depth > 0 && depth == sc.depth {
					if !sc.local() {
						s.setPin(PinSetConfig)
					}
					sc = setConfigCall{}
				}
				depth--
			case '.':
				if (afterInto || create) && s.kw(s.prev, "pg_temp") {
					s.setPin(PinTemp)
				}
			}
		case TokIdent:
			if depth != 0 {
				break
			}
			if s.with {
				s.withVerb(t)
				break
			}
			if s.cur.Command == CmdSelect {
				switch {
				case s.kw(t, "into"):
					afterInto = true
					continue
				case afterInto && (s.kw(t, "temp") || s.kw(t, "temporary")):
					s.setPin(PinTemp)
				case afterInto && (s.kw(t, "local") || s.kw(t, "global") || s.kw(t, "pg_temp")):
					continue // keep afterInto for the next token
				}
			}
			if create && s.kw(t, "drop") && s.kw(s.prev, "commit") && s.kw(s.prev2, "on") {
				onCommitDrop = true
			}
		}
		afterInto = false
	}
	if onCommitDrop && s.cur.Pin == PinTemp {
		s.cur.Pin = "" // CREATE TEMP TABLE … ON COMMIT DROP ends with the transaction
	}
}

// withVerb sets the command from the main statement's verb after WITH's
// common table expressions (t is at parenthesis depth 0).
func (s *stmtScanner) withVerb(t Token) {
	w := s.sql[t.Start:t.End]
	switch {
	case eqFold(w, "select"), eqFold(w, "values"), eqFold(w, "table"):
		s.cur.Command = CmdSelect
	case eqFold(w, "insert"):
		s.cur.Command = CmdInsert
	case eqFold(w, "update"):
		s.cur.Command = CmdUpdate
	case eqFold(w, "delete"):
		s.cur.Command = CmdDelete
	case eqFold(w, "merge"):
		s.cur.Command = CmdMerge
	default:
		return
	}
	s.with = false
}

func (s *stmtScanner) setPin(reason string) {
	if s.cur.Pin == "" {
		s.cur.Pin = reason
	}
}

// isCallee reports whether t names function fn (unquoted or quoted).
func (s *stmtScanner) isCallee(t Token, fn string) bool {
	switch t.Kind {
	case TokIdent:
		return eqFold(s.sql[t.Start:t.End], fn)
	case TokQuotedIdent:
		return t.End-t.Start == len(fn)+2 && s.sql[t.Start+1:t.End-1] == fn
	}
	return false
}

// checkCall pins the statement if the ( just read opens a call of a
// session-level advisory lock function.
func (s *stmtScanner) checkCall() {
	p := s.prev
	if p.Kind != TokIdent && p.Kind != TokQuotedIdent {
		return
	}
	if n := p.End - p.Start; n < len("pg_advisory_lock") || n > len(`"pg_try_advisory_lock_shared"`) {
		return
	}
	for _, fn := range [...]string{"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared"} {
		if s.isCallee(p, fn) {
			s.setPin(PinAdvisoryLock)
			return
		}
	}
}

// setConfigCall follows the arguments of a set_config( call.
type setConfigCall struct {
	depth     int  // paren depth of its arguments; 0 when not in a call
	commas    int  // top-level commas seen
	third     int  // tokens in the third argument
	thirdTrue bool // the third argument is the keyword TRUE
}

func (c *setConfigCall) see(s *stmtScanner, t Token) {
	if s.punct(t, ',') {
		c.commas++
		return
	}
	if c.commas == 2 {
		c.third++
		c.thirdTrue = s.kw(t, "true")
	}
}

// local reports whether the call was set_config(a, b, true): only then is
// the change transaction-scoped.
func (c *setConfigCall) local() bool {
	return c.commas == 2 && c.third == 1 && c.thirdTrue
}
