package pool

import "container/list"

// DefaultStatementCacheSize bounds the prepared statements one backend keeps.
const DefaultStatementCacheSize = 512

// StatementCache remembers which proxy-global prepared statements a backend
// holds, least recently used first out. It is owned by whoever holds the Conn.
type StatementCache struct {
	max   int
	order *list.List // of *cachedStatement, front = most recent
	byKey map[string]*list.Element
}

type cachedStatement struct {
	name, query string
}

// NewStatementCache returns a cache of at most max statements (0: default).
func NewStatementCache(max int) *StatementCache {
	if max <= 0 {
		max = DefaultStatementCacheSize
	}
	return &StatementCache{max: max, order: list.New(), byKey: make(map[string]*list.Element)}
}

// SetMax changes the bound; it applies from the next Add.
func (c *StatementCache) SetMax(max int) {
	if max > 0 {
		c.max = max
	}
}

// Has reports whether the backend holds name prepared as query, and marks it used.
func (c *StatementCache) Has(name, query string) bool {
	e, ok := c.byKey[name]
	if !ok || e.Value.(*cachedStatement).query != query {
		return false
	}
	c.order.MoveToFront(e)
	return true
}

// Contains reports whether the backend holds a statement called name.
func (c *StatementCache) Contains(name string) bool {
	_, ok := c.byKey[name]
	return ok
}

// Add records name as prepared and returns the names that must be closed on
// the backend to stay within the bound.
func (c *StatementCache) Add(name, query string) (evicted []string) {
	if e, ok := c.byKey[name]; ok {
		e.Value.(*cachedStatement).query = query
		c.order.MoveToFront(e)
		return nil
	}
	c.byKey[name] = c.order.PushFront(&cachedStatement{name, query})
	for c.order.Len() > c.max {
		last := c.order.Back()
		cs := last.Value.(*cachedStatement)
		c.order.Remove(last)
		delete(c.byKey, cs.name)
		evicted = append(evicted, cs.name)
	}
	return evicted
}

// Remove forgets name.
func (c *StatementCache) Remove(name string) {
	if e, ok := c.byKey[name]; ok {
		c.order.Remove(e)
		delete(c.byKey, name)
	}
}

// Clear forgets everything (after DISCARD ALL or DEALLOCATE ALL).
func (c *StatementCache) Clear() {
	c.order.Init()
	clear(c.byKey)
}

// Len returns how many statements are held.
func (c *StatementCache) Len() int { return c.order.Len() }
