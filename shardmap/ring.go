package shardmap

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// KeyHash is the hash a hashed table places a key by: xxHash64 (seed 0) of the
// normalised bytes.
func KeyHash(norm []byte) uint64 { return xxhash.Sum64(norm) }

// VNodeName is the string whose xxHash64 is the ring point of virtual node i
// of a shard: the shard name, "#", and i in decimal ("s0#0", "s0#1", …).
// Points depend only on the shard's name, so adding a shard only adds points
// and moves keys only to the new shard.
func VNodeName(shard string, i int) string { return shard + "#" + strconv.Itoa(i) }

// ring is a consistent-hash ring: sorted points and, for each, the index of
// the shard that owns it.
type ring struct {
	points []uint64
	owners []int32
}

// newRing places vnodes points per shard. Points are ordered by hash, then
// by shard name, then by vnode number, so equal points (a 64-bit collision)
// resolve the same way whatever the order of shards in the file.
func newRing(shards []string, vnodes int) ring {
	type pt struct {
		h     uint64
		shard int32
		i     int
	}
	pts := make([]pt, 0, len(shards)*vnodes)
	for s, name := range shards {
		for i := 0; i < vnodes; i++ {
			pts = append(pts, pt{xxhash.Sum64String(VNodeName(name, i)), int32(s), i})
		}
	}
	slices.SortFunc(pts, func(a, b pt) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		if c := cmp.Compare(shards[a.shard], shards[b.shard]); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	r := ring{points: make([]uint64, len(pts)), owners: make([]int32, len(pts))}
	for i, p := range pts {
		r.points[i], r.owners[i] = p.h, p.shard
	}
	return r
}

// constRing is a ring where one shard owns the whole hash space; it models
// an unsharded table in Compare.
func constRing(shard int32) ring {
	return ring{points: []uint64{0}, owners: []int32{shard}}
}

// locate returns the owner of the first point >= h, wrapping to the first
// point. The ring is never empty.
func (r *ring) locate(h uint64) int32 {
	// A hand-written search: slices.BinarySearch is as fast, but this keeps
	// the rule ("first point >= h") visible in one place.
	lo, hi := 0, len(r.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		lo = 0
	}
	return r.owners[lo]
}
