package proxy

import (
	"encoding/binary"

	"github.com/shardwire/shardwire/router"
)

// runInsertParts runs a multi-row INSERT whose rows live on several shards:
// each shard gets its rows, RETURNING rows come back in the client's row
// order, and the row counts add up. Each shard commits on its own.
func (s *session) runInsertParts(m *multiStmt, parts []router.InsertPart) error {
	shards := make([]string, len(parts))
	owner := []int{} // original row → part
	for i, part := range parts {
		shards[i] = part.Shard
		for _, r := range part.Rows {
			for len(owner) <= r {
				owner = append(owner, -1)
			}
			owner[r] = i
		}
	}
	msgs := make([][]byte, len(parts))
	for i := range parts {
		var err error
		if msgs[i], err = m.partMsgs(&parts[i]); err != nil {
			return err
		}
	}
	f, err := s.acquireFanout(shards, false)
	if err != nil {
		return err
	}
	f.send(func(i int) []byte { return msgs[i] })
	desc, err := f.head()
	if err == nil && desc == nil && f.failed() == nil && m.describe {
		f.out = append(f.out, 'n', 0, 0, 0, 4) // NoData: no RETURNING
	}
	if err == nil && desc != nil && f.failed() == nil {
		if m.bind == nil || m.describe {
			f.out = appendFrame(f.out, 'T', desc)
		}
		for _, i := range owner {
			if i < 0 {
				continue
			}
			row, err := source{f: f, l: f.legs[i]}.Next()
			if err != nil {
				break // the error or the loss is reported below
			}
			if err := f.emit('D', row); err != nil {
				f.discard(errClientGone)
				return errClientGone
			}
		}
	}
	f.drain()
	if _, partial := f.partialFailure("the rows for shards %s were inserted and committed"); partial != nil {
		return s.finishMulti(f, m, "", partial)
	}
	return s.finishMulti(f, m, sumLegTags(f), nil)
}

// partMsgs returns the messages that run one part of a split INSERT.
func (m *multiStmt) partMsgs(part *router.InsertPart) ([]byte, error) {
	if m.bind == nil {
		return appendQuery(nil, part.SQL), nil
	}
	orig, ok := m.params.(*router.BindParams)
	if !ok {
		return nil, &clientError{code: codeInternalError, msg: "bind parameters unavailable for a split INSERT"}
	}
	results, err := bindResultFormats(m.bind)
	if err != nil {
		return nil, err
	}
	bp := part.Bind(orig)
	types := binary.BigEndian.AppendUint16(nil, uint16(len(bp.Types)))
	for _, t := range bp.Types {
		types = binary.BigEndian.AppendUint32(types, t)
	}
	bind := binary.BigEndian.AppendUint16(nil, uint16(len(bp.Formats)))
	for _, f := range bp.Formats {
		bind = binary.BigEndian.AppendUint16(bind, uint16(f))
	}
	bind = binary.BigEndian.AppendUint16(bind, uint16(len(bp.Values)))
	for _, v := range bp.Values {
		if v == nil {
			bind = binary.BigEndian.AppendUint32(bind, 0xFFFFFFFF)
			continue
		}
		bind = binary.BigEndian.AppendUint32(bind, uint32(len(v)))
		bind = append(bind, v...)
	}
	bind = append(bind, results...)
	pm := *m
	pm.paramTypes = types
	return pm.statementMsgs(part.SQL, bind), nil
}
