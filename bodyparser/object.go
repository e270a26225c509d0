package bodyparser

import (
	"cmp"
	"slices"
	"strconv"
)

// An Object is a request body as a JavaScript object: its own properties,
// in JavaScript's order (array-index keys first, ascending, then the others
// in the order they were first set). A value is a string, a float64, a
// bool, nil (JSON's null), an *Object or a []any.
//
// The zero value is an empty object.
type Object struct {
	members []member
	// index finds a key's member once the object is too large for a scan;
	// the bodies of this API have two or three keys and never build it.
	index map[string]int
}

type member struct {
	key string
	val any
}

// indexFrom is how many members an object has before lookups go through
// an index: below it, comparing every key is cheaper than hashing one, and
// a body of one key does not pay for a map.
const indexFrom = 8

// Len is the number of properties.
func (o *Object) Len() int { return len(o.members) }

// At returns the i-th property in JavaScript's order, 0 <= i < Len().
func (o *Object) At(i int) (key string, value any) {
	m := o.members[i]
	return m.key, m.val
}

// Get returns the value of key, and whether the object has it.
func (o *Object) Get(key string) (value any, ok bool) {
	if i := o.find(key); i >= 0 {
		return o.members[i].val, true
	}
	return nil, false
}

// find is the position of key's member, or -1.
func (o *Object) find(key string) int {
	if o.index != nil {
		if i, ok := o.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range o.members {
		if o.members[i].key == key {
			return i
		}
	}
	return -1
}

// set gives key the value v: like JSON.parse, the last duplicate wins, in
// the first one's place.
func (o *Object) set(key string, v any) {
	if i := o.find(key); i >= 0 {
		o.members[i].val = v
		return
	}
	o.members = append(o.members, member{key, v})
	switch {
	case o.index != nil:
		o.index[key] = len(o.members) - 1
	case len(o.members) > indexFrom:
		o.index = make(map[string]int, 2*len(o.members))
		o.reindex()
	}
}

func (o *Object) reindex() {
	for i, m := range o.members {
		o.index[m.key] = i
	}
}

// orderKeys puts array-index keys ("0", "17") first in ascending order, as
// JavaScript orders an object's own properties; other keys keep their
// order. It sorts in n log n: a body of thousands of keys in descending
// order must not cost a quadratic insertion sort.
func (o *Object) orderKeys() {
	if sortIndexKeys(o.members) && o.index != nil {
		o.reindex()
	}
}

// sortIndexKeys orders ms as orderKeys says, and reports whether any
// member moved.
func sortIndexKeys(ms []member) bool {
	type indexMember struct {
		n uint32
		m member
	}
	var idx []indexMember
	rest := 0
	for _, m := range ms {
		if n, ok := arrayIndex(m.key); ok {
			idx = append(idx, indexMember{n, m})
		} else {
			ms[rest] = m // other keys move up, in their order
			rest++
		}
	}
	if len(idx) == 0 {
		return false
	}
	// Keys are unique, so the order of equal indexes never matters.
	slices.SortFunc(idx, func(a, b indexMember) int { return cmp.Compare(a.n, b.n) })
	copy(ms[len(idx):], ms[:rest])
	for i, e := range idx {
		ms[i] = e.m
	}
	return true
}

// arrayIndex reads an array-index key: a canonical decimal below 2^32-1.
func arrayIndex(k string) (uint32, bool) {
	if k == "" || len(k) > 10 || (len(k) > 1 && k[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(k, 10, 64)
	if err != nil || n >= 1<<32-1 {
		return 0, false
	}
	return uint32(n), true
}
