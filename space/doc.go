// Package space is blobnode's page allocator: a buddy allocator over the heap
// of one volume, with every metadata change written through the volume's
// journal.
//
// # Pages and classes
//
// Page sizes are the powers of two from the spage (1<<SpageShift) to the
// lpage (1<<LpageShift); each size is a class, class 0 being the spage. The
// heap is a whole number of lpages. Inside an lpage the pages form a complete
// binary tree: node 1 is the lpage itself, nodes 2n and 2n+1 are the two
// halves (buddies) of node n, and the nodes at depth d are the pages of class
// K-1-d, where K is the number of classes. A node is in exactly one of four
// states: free, allocated, split (both halves accounted for below it), or
// covered (inside a free or allocated ancestor).
//
// A blob of S bytes is stored as floor(S/lpage) lpages followed by its tail,
// rounded up to a whole number of spages and cut into one page per set bit,
// largest first, so the waste of a blob is under one spage.
//
// # Deterministic and history independent
//
// Replicas must place a blob at the same offsets. The allocator therefore
// takes, for a page of class c, the lowest-addressed free page of the
// smallest class >= c that has one (an lpage never used counts as free), and
// splits it down by keeping the left half. Frees merge buddies eagerly. The
// set of free pages is then a function of the set of allocated pages alone,
// not of the order of the operations that produced it, and so are all
// decisions. That is what lets one node rebuild its allocator from the
// catalog after a crash (Rebuild) and still choose exactly what its peers
// choose. Free "lists" are ordered sets: a per-class bitmap over lpages
// (summary) says which lpages hold a free page of that class, and the lpage's
// own tree bitmap says which pages.
//
// # On-disk state (inside the volume's state region; little-endian u64 words)
//
//	offset  size          contents
//	0       4096          header: magic "BNSPACE1", frontier (lpages whose
//	                      metadata is initialised), applied index, flags
//	                      (bit 0: a rebuild is in progress), allocated pages
//	                      per class [K], free pages per class [K] (counted
//	                      below the frontier)
//	4096    K*SW*8        summaries: for each class, SW words, one bit per
//	                      lpage: the lpage has a free page of that class
//	E       nL*2W*8       entries: per lpage, W words of free bits and W words
//	                      of allocated bits, indexed by tree node
//
// SW = ceil(nL/64) where nL = VolumeSize>>LpageShift (an upper bound on the
// heap's lpage count, so the layout depends on the geometry only),
// W = max(1, 2^K/64), and E is the summaries' end rounded up to 4096.
//
// Lpages at or above the frontier were never used: their entries are never
// read and their summary bits are zero. The frontier only moves up; a fully
// free lpage below it is an ordinary free lpage, so the decisions do not
// depend on where the frontier is.
//
// # Durability
//
// The device holds the truth and memory a cache of it. Opening reads the
// header only; summaries and entries are read on first touch and then kept.
// Every change is made once in memory and marks the words it touched dirty;
// Commit turns the dirty words into one journal transaction, so a crash
// leaves the state of some prefix of the committed transactions. Blob data
// never goes through the journal, and no allocator metadata lives inside
// heap pages, so replaying the journal can never overwrite blob data.
package space
