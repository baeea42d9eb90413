package space

// ClassStats describes the pages of one size.
type ClassStats struct {
	PageSize  int64
	FreePages uint64 // whole free pages of this size (for lpages: including never-used ones)
	UsedPages uint64 // pages of this size handed out
}

// Stats is a summary of the heap, read from counters (O(classes)).
type Stats struct {
	Classes    []ClassStats // smallest first
	TotalBytes int64
	FreeBytes  int64
	UsedBytes  int64
	// LargestFree is the largest free page: the biggest single extent an
	// allocation can get without splitting across pages.
	LargestFree int64
	// Fragmentation is the share of free bytes not available as whole
	// lpages: 0 when every free byte lies in free lpages, near 1 when free
	// space is scattered in small pages.
	Fragmentation float64
}

// Stats returns the allocator's counters.
func (a *Allocator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Stats{TotalBytes: int64(a.l.lpages) << a.l.lpageShift}
	top := a.l.classes - 1
	for c := range a.l.classes {
		cs := ClassStats{PageSize: a.l.pageSize(c), FreePages: a.freePages(c), UsedPages: a.usedPages(c)}
		if c == top {
			cs.FreePages += a.untouchedLpages()
		}
		st.FreeBytes += int64(cs.FreePages) * cs.PageSize
		st.UsedBytes += int64(cs.UsedPages) * cs.PageSize
		if cs.FreePages > 0 {
			st.LargestFree = cs.PageSize
		}
		st.Classes = append(st.Classes, cs)
	}
	if st.FreeBytes > 0 {
		whole := int64(st.Classes[top].FreePages) * st.Classes[top].PageSize
		st.Fragmentation = 1 - float64(whole)/float64(st.FreeBytes)
	}
	return st
}
