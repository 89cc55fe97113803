package proxy

import (
	"bytes"

	"github.com/shardwire/shardwire/router"
)

// binaryCopyTrailer ends a binary COPY stream.
var binaryCopyTrailer = []byte{0xff, 0xff}

// gatherCopy runs a COPY … TO STDOUT that spans shards (PlanCopyOut) and
// sends the client one stream: the first shard's CopyOutResponse and
// header, then every shard's rows, then one trailer and the summed count.
func (s *session) gatherCopy(sql string, plan *router.CopyOut) error {
	route := router.Route{Shards: plan.Shards}
	if why := s.canFanOut(false); why != "" {
		return multiRefusal(route, "a COPY across shards "+why+" is not supported yet")
	}
	f, err := s.acquireFanout(plan.Shards, true)
	if err != nil {
		return err
	}
	m := &multiStmt{route: route}
	msg := appendQuery(nil, sql)
	f.send(func(int) []byte { return msg })
	resp := f.awaitCopy('H')
	if _, lost := f.lostErr(); lost != nil || f.failed() != nil {
		return s.finishMulti(f, m, "", nil)
	}
	binaryFormat := plan.Format == router.CopyBinary
	f.out = appendFrame(f.out, 'H', resp)
	for i, l := range f.legs {
		first := true
		for {
			typ, body, err := f.next(l)
			if err != nil || typ == 'E' || typ == 'Z' {
				break
			}
			if typ == 'C' {
				break
			}
			if typ != 'd' {
				continue // the shard's CopyDone: one is sent at the end
			}
			data := body
			switch {
			case binaryFormat:
				if first {
					// The 19-byte header comes with the first row (or
					// the trailer): once, from the first shard.
					if len(data) < 19 {
						return s.finishMulti(f, m, "", &clientError{code: codeProtocolViolation, msg: "shardwire: malformed binary COPY header from shard " + l.shard})
					}
					if i > 0 {
						data = data[19:]
					}
				}
				if bytes.HasSuffix(data, binaryCopyTrailer) && (len(data) == 2 || (first && len(data) == 21)) {
					data = data[:len(data)-2]
				}
			case plan.Header && first && i > 0:
				data = nil // the header line, already sent
			}
			first = false
			if len(data) == 0 {
				continue
			}
			if err := f.emit('d', data); err != nil {
				f.discard(errClientGone)
				return errClientGone
			}
		}
	}
	if f.failed() != nil {
		return s.finishMulti(f, m, "", nil)
	}
	if _, lost := f.lostErr(); lost == nil {
		if binaryFormat {
			f.out = appendFrame(f.out, 'd', binaryCopyTrailer)
		}
		f.out = appendFrame(f.out, 'c', nil)
	}
	return s.finishMulti(f, m, sumLegTags(f), nil)
}
