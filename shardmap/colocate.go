package shardmap

import "bytes"

// Colocated reports whether t and u place equal key values on the same
// shard, so that rows of the two tables whose keys are equal always live
// together and a join on key equality can run on each shard separately.
// Both must be sharded tables of the same Map, with key types that
// normalise equal values alike (integer and bigint do), and the same
// placement: both hashed (one ring per map), or the same lists, ranges and
// default shard.
func (t *Table) Colocated(u *Table) bool {
	switch {
	case t == nil || u == nil || t.m != u.m:
		return false
	case t == u:
		return !t.Replicated()
	case t.strategy != u.strategy || t.strategy == Replicated:
		return false
	case t.typ != u.typ && !(intType(t.typ) && intType(u.typ)):
		return false
	case t.def != u.def:
		return false
	}
	switch t.strategy {
	case Hash:
		return true
	case List:
		if len(t.listVals) != len(u.listVals) {
			return false
		}
		for i, e := range t.listVals {
			if f := u.listVals[i]; e.norm != f.norm || e.shard != f.shard {
				return false
			}
		}
		return true
	case Range:
		if len(t.ranges) != len(u.ranges) {
			return false
		}
		for i, r := range t.ranges {
			s := u.ranges[i]
			if r.shard != s.shard || !sameBound(r.from, s.from) || !sameBound(r.to, s.to) {
				return false
			}
		}
		return true
	}
	return false
}

func intType(k KeyType) bool { return k == Bigint || k == Integer }

// sameBound compares range ends, where nil (open) differs from any value.
func sameBound(a, b []byte) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return bytes.Equal(a, b)
}
