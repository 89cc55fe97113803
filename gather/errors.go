package gather

import (
	"errors"
	"fmt"
)

// UnsupportedError says the merge cannot give the answer one server would
// give for a construct of the statement (a type it cannot order or combine,
// for instance). The proxy answers it with SQLSTATE 0A000
// (feature_not_supported) rather than risk a wrong result.
type UnsupportedError struct {
	What string // the construct, e.g. "ORDER BY on type json"
}

func (e *UnsupportedError) Error() string {
	return "cross-shard query not supported: " + e.What
}

// SQLState is the SQLSTATE to report: 0A000.
func (e *UnsupportedError) SQLState() string { return "0A000" }

// SQLError is an error one server would itself have raised for the
// statement, such as 22003 "bigint out of range" when combined sums overflow.
// Message is worded as Postgres words it.
type SQLError struct {
	Code    string // SQLSTATE
	Message string
}

func (e *SQLError) Error() string { return e.Message }

// SQLState is the SQLSTATE to report.
func (e *SQLError) SQLState() string { return e.Code }

// SourceError is a failure reading or decoding the rows of one source: the
// error its Next returned, or a malformed row or value. Source is the index
// of the source in the slice given to Run.
type SourceError struct {
	Source int
	Err    error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("gather: shard result %d: %v", e.Source, e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }

// ErrNotSorted is wrapped in a SourceError when a source yields its rows out
// of the plan's ORDER BY order, which a merge cannot repair. Besides a
// routing bug, the usual cause is a database whose collation is not C, so
// that the server orders text differently from the merge.
var ErrNotSorted = errors.New("rows not in ORDER BY order (is the database collation C?)")

var (
	errBigintRange   = &SQLError{Code: "22003", Message: "bigint out of range"}
	errIntegerRange  = &SQLError{Code: "22003", Message: "integer out of range"}
	errSmallintRange = &SQLError{Code: "22003", Message: "smallint out of range"}
	errFloatOverflow = &SQLError{Code: "22003", Message: "value out of range: overflow"}
	errNumericRange  = &SQLError{Code: "22003", Message: "value overflows numeric format"}
)
