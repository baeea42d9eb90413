package catalog

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var modelSeed = flag.Uint64("catalog.seed", 0, "run TestModel with only this seed")

// model is the catalog as plain maps.
type model struct {
	blobs   map[string]Blob
	resv    map[uint64]Reservation
	local   map[string]uint64
	reqs    map[uint64]Request
	members map[string]Member
	applied uint64
}

func (m *model) clone() *model {
	return &model{maps.Clone(m.blobs), maps.Clone(m.resv), maps.Clone(m.local),
		maps.Clone(m.reqs), maps.Clone(m.members), m.applied}
}

func (m *model) list(prefix, after string, limit int) ([]string, bool) {
	var keys []string
	for k := range m.blobs {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if len(keys) > limit {
		return keys[:limit], true
	}
	return keys, false
}

func (m *model) expired(now int64, limit int) []uint64 {
	var rs []Reservation
	for _, r := range m.resv {
		if r.Deadline <= now {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b Reservation) int {
		return cmp.Or(cmp.Compare(a.Deadline, b.Deadline), cmp.Compare(a.ID, b.ID))
	})
	ids := make([]uint64, 0, len(rs))
	for _, r := range rs[:min(limit, len(rs))] {
		ids = append(ids, r.ID)
	}
	return ids
}

// modelRun drives one seed: random batches of operations, each applied to
// the catalog in one Update and to a copy of the model that replaces the
// model only if the Update commits; reads are compared as they happen.
type modelRun struct {
	t   *testing.T
	rng *rand.Rand
	db  *DB
	m   *model
	dir string
}

func (r *modelRun) key() string {
	parts := []string{"a", "b", "ab", "ü", "日本", "z9", "a/b", ""}
	n := 1 + r.rng.IntN(3)
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte('/')
		}
		sb.WriteString(parts[r.rng.IntN(len(parts))])
	}
	if sb.Len() == 0 {
		return "_"
	}
	return sb.String()
}

func (r *modelRun) prefix() string {
	k := r.key()
	return k[:r.rng.IntN(len(k)+1)]
}

func (r *modelRun) blob(key string) Blob {
	b := testBlob(key, r.rng.Uint64N(50)+1, r.rng.Int64N(3*testChunk))
	b.Created = r.rng.Int64() - r.rng.Int64()
	return b
}

func (r *modelRun) reservation() Reservation {
	return testReservation(r.rng.Uint64N(40)+1, r.rng.Int64N(1<<20), r.rng.Int64N(200)-50)
}

// request returns a random valid request recorded at or below the index
// the current batch will set (Check requires it).
func (r *modelRun) request(m *model) Request {
	samples := sampleRequests()
	q := samples[r.rng.IntN(len(samples))]
	q.ID = r.rng.Uint64N(40) + 1
	q.Index = max(1, m.applied+1-r.rng.Uint64N(min(m.applied+1, 8)))
	return q
}

// registryStep runs one random operation on the requests or the members.
func (r *modelRun) registryStep(tx *Tx, m *model) error {
	switch op := r.rng.IntN(100); {
	case op < 30:
		q := r.request(m)
		if err := tx.PutRequest(q); err != nil {
			return err
		}
		m.reqs[q.ID] = q
	case op < 45:
		id := r.rng.Uint64N(45) + 1
		got, ok, err := tx.GetRequest(id)
		want, wantOK := m.reqs[id]
		if err != nil || ok != wantOK || !reflect.DeepEqual(got, want) {
			return fmt.Errorf("GetRequest(%d) = %+v, %v, %v; model %+v, %v", id, got, ok, err, want, wantOK)
		}
	case op < 55:
		through := r.rng.Uint64N(m.applied + 2)
		n, err := tx.PruneRequests(through)
		if err != nil {
			return err
		}
		want := 0
		for id, q := range m.reqs {
			if q.Index <= through {
				delete(m.reqs, id)
				want++
			}
		}
		if n != want {
			return fmt.Errorf("PruneRequests(%d) deleted %d; model %d", through, n, want)
		}
	case op < 75:
		mb := Member{ID: fmt.Sprintf("node-%d", r.rng.IntN(6)), APIAddr: fmt.Sprintf("h%d:80", r.rng.IntN(99)), RaftAddr: fmt.Sprintf("h%d:70", r.rng.IntN(99))}
		if err := tx.PutMember(mb); err != nil {
			return err
		}
		m.members[mb.ID] = mb
	case op < 85:
		id := fmt.Sprintf("node-%d", r.rng.IntN(6))
		if err := tx.DeleteMember(id); err != nil {
			return err
		}
		delete(m.members, id)
	default:
		got, err := tx.Members()
		if err != nil {
			return err
		}
		if want := m.memberList(); !slices.Equal(got, want) {
			return fmt.Errorf("Members = %+v; model %+v", got, want)
		}
	}
	return nil
}

func (m *model) memberList() []Member {
	var out []Member
	for _, id := range slices.Sorted(maps.Keys(m.members)) {
		out = append(out, m.members[id])
	}
	return out
}

// step runs one random operation in tx against the model copy m.
func (r *modelRun) step(tx *Tx, m *model) error {
	if r.rng.IntN(100) < 20 {
		return r.registryStep(tx, m)
	}
	switch op := r.rng.IntN(100); {
	case op < 22:
		b := r.blob(r.key())
		if err := tx.PutBlob(b); err != nil {
			return err
		}
		if old, ok := m.blobs[b.Key]; ok && old.Version != b.Version {
			delete(m.local, b.Key)
		}
		m.blobs[b.Key] = b
	case op < 30:
		b := r.blob(r.key())
		if err := tx.PutBlobMarked(b); err != nil {
			return err
		}
		m.blobs[b.Key] = b
		m.local[b.Key] = b.Version
	case op < 40:
		k := r.key()
		if err := tx.DeleteBlob(k); err != nil {
			return err
		}
		delete(m.blobs, k)
		delete(m.local, k)
	case op < 50:
		k := r.key()
		got, ok, err := tx.GetBlob(k)
		want, wantOK := m.blobs[k]
		if err != nil || ok != wantOK || !reflect.DeepEqual(got, want) {
			return fmt.Errorf("GetBlob(%q) = %+v, %v, %v; model %+v, %v", k, got, ok, err, want, wantOK)
		}
	case op < 62:
		prefix, after, limit := r.prefix(), r.prefix(), 1+r.rng.IntN(12)
		if r.rng.IntN(2) == 0 {
			after = ""
		}
		got, more, err := tx.ListBlobs(prefix, after, limit)
		if err != nil {
			return err
		}
		want, wantMore := m.list(prefix, after, limit)
		if !slices.Equal(blobKeys(got), want) || more != wantMore {
			return fmt.Errorf("ListBlobs(%q, %q, %d) = %q, %v; model %q, %v", prefix, after, limit, blobKeys(got), more, want, wantMore)
		}
		for _, b := range got {
			if !reflect.DeepEqual(b, m.blobs[b.Key]) {
				return fmt.Errorf("ListBlobs record of %q differs from model", b.Key)
			}
		}
	case op < 72:
		res := r.reservation()
		if err := tx.PutReservation(res); err != nil {
			return err
		}
		m.resv[res.ID] = res
	case op < 78:
		id := r.rng.Uint64N(40) + 1
		if err := tx.DeleteReservation(id); err != nil {
			return err
		}
		delete(m.resv, id)
	case op < 84:
		now, limit := r.rng.Int64N(250)-60, 1+r.rng.IntN(10)
		got, err := tx.ExpiredReservations(now, limit)
		if err != nil {
			return err
		}
		ids := make([]uint64, len(got))
		for i, res := range got {
			ids[i] = res.ID
			if !reflect.DeepEqual(res, m.resv[res.ID]) {
				return fmt.Errorf("ExpiredReservations record %d differs from model", res.ID)
			}
		}
		if want := m.expired(now, limit); !slices.Equal(ids, want) {
			return fmt.Errorf("ExpiredReservations(%d, %d) = %v; model %v", now, limit, ids, want)
		}
	case op < 92:
		k := r.key()
		version := r.rng.Uint64N(50) + 1
		if b, ok := m.blobs[k]; ok && r.rng.IntN(4) > 0 {
			version = b.Version
		}
		err := tx.MarkLocal(k, version)
		if b, ok := m.blobs[k]; ok && b.Version == version {
			if err != nil {
				return err
			}
			m.local[k] = version
		} else if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("MarkLocal(%q, %d) without that version: %v", k, version, err)
		}
	case op < 95:
		k := r.key()
		if err := tx.ClearLocal(k); err != nil {
			return err
		}
		delete(m.local, k)
	default:
		n, err := tx.CountBlobs()
		if err != nil || n != len(m.blobs) {
			return fmt.Errorf("CountBlobs = %d, %v; model %d", n, err, len(m.blobs))
		}
	}
	return nil
}

var errAbort = errors.New("deliberate abort")

func (r *modelRun) batch() {
	m := r.m.clone()
	abort := r.rng.IntN(10) == 0
	err := r.db.Update(func(tx *Tx) error {
		for range 1 + r.rng.IntN(20) {
			if err := r.step(tx, m); err != nil {
				return err
			}
		}
		m.applied++
		if err := tx.SetAppliedIndex(m.applied); err != nil {
			return err
		}
		if abort {
			return errAbort
		}
		return nil
	})
	switch {
	case abort && errors.Is(err, errAbort):
		// The model copy is dropped along with the transaction.
	case err != nil:
		r.t.Fatal(err)
	default:
		r.m = m
	}
}

// compareAll checks the whole catalog against the model.
func (r *modelRun) compareAll() {
	r.t.Helper()
	mustView(r.t, r.db, func(tx *Tx) error {
		var keys []string
		if err := tx.ForEachBlob(func(b Blob) error {
			keys = append(keys, b.Key)
			if !reflect.DeepEqual(b, r.m.blobs[b.Key]) {
				return fmt.Errorf("blob %q differs from model", b.Key)
			}
			if v, ok, err := tx.LocalVersion(b.Key); err != nil || ok != (r.m.local[b.Key] != 0) || v != r.m.local[b.Key] {
				return fmt.Errorf("local %q = %d, %v, %v; model %d", b.Key, v, ok, err, r.m.local[b.Key])
			}
			return nil
		}); err != nil {
			return err
		}
		if want := slices.Sorted(maps.Keys(r.m.blobs)); !slices.Equal(keys, want) {
			return fmt.Errorf("blob keys %q; model %q", keys, want)
		}
		n := 0
		if err := tx.ForEachReservation(func(res Reservation) error {
			n++
			if !reflect.DeepEqual(res, r.m.resv[res.ID]) {
				return fmt.Errorf("reservation %d differs from model", res.ID)
			}
			return nil
		}); err != nil {
			return err
		}
		if n != len(r.m.resv) {
			return fmt.Errorf("%d reservations; model %d", n, len(r.m.resv))
		}
		var reqs []uint64
		if err := tx.ForEachRequest(func(q Request) error {
			reqs = append(reqs, q.ID)
			if !reflect.DeepEqual(q, r.m.reqs[q.ID]) {
				return fmt.Errorf("request %d differs from model:\n%+v\n%+v", q.ID, q, r.m.reqs[q.ID])
			}
			return nil
		}); err != nil {
			return err
		}
		if want := slices.Sorted(maps.Keys(r.m.reqs)); !slices.Equal(reqs, want) {
			return fmt.Errorf("request ids %v; model %v", reqs, want)
		}
		if got, err := tx.Members(); err != nil || !slices.Equal(got, r.m.memberList()) {
			return fmt.Errorf("Members = %+v, %v; model %+v", got, err, r.m.memberList())
		}
		if i, err := tx.AppliedIndex(); err != nil || i != r.m.applied {
			return fmt.Errorf("applied %d, %v; model %d", i, err, r.m.applied)
		}
		return nil
	})
	if err := r.db.Check(); err != nil {
		r.t.Fatalf("Check: %v", err)
	}
}

// reopen closes and reopens the catalog.
func (r *modelRun) reopen() {
	path := r.db.Path()
	if err := r.db.Sync(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.db.Close(); err != nil {
		r.t.Fatal(err)
	}
	db, err := Open(path, Options{NoSync: true, InitialMmapSize: 16 << 20})
	if err != nil {
		r.t.Fatal(err)
	}
	r.db = db
}

// restoreRoundTrip moves the state through a snapshot into a fresh catalog
// whose local marks partly match: only matching marks survive.
func (r *modelRun) restoreRoundTrip(gen int) {
	var buf bytes.Buffer
	s, err := r.db.BeginSnapshot()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := s.WriteTo(&buf); err != nil {
		r.t.Fatal(err)
	}
	s.Release()

	// The receiver has some of the same blobs, marked, and one stale mark.
	fresh, err := Open(filepath.Join(r.dir, fmt.Sprintf("restored-%d.db", gen)), Options{NoSync: true, InitialMmapSize: 16 << 20})
	if err != nil {
		r.t.Fatal(err)
	}
	keep := map[string]uint64{}
	mustUpdate(r.t, fresh, func(tx *Tx) error {
		for _, k := range slices.Sorted(maps.Keys(r.m.blobs)) { // map order would break replay
			b := r.m.blobs[k]
			if r.rng.IntN(2) == 0 {
				continue
			}
			if r.rng.IntN(3) == 0 {
				b.Version++ // stale here: its mark must be dropped
			} else {
				keep[k] = b.Version
			}
			if err := tx.PutBlob(b); err != nil {
				return err
			}
			if err := tx.MarkLocal(k, b.Version); err != nil {
				return err
			}
		}
		return nil
	})
	if err := fresh.Restore(&buf); err != nil {
		r.t.Fatal(err)
	}
	if err := r.db.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.db = fresh
	r.m.local = keep
}

func TestModel(t *testing.T) {
	seeds := []uint64{1, 2, 3, 0xb10b, 0xca7a10}
	if *modelSeed != 0 {
		seeds = []uint64{*modelSeed}
	}
	batches := 300
	if testing.Short() {
		batches = 60
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d; replay with: go test ./catalog -run 'TestModel/^%d$' -catalog.seed=%d", seed, seed, seed)
			dir := t.TempDir()
			db, err := Open(filepath.Join(dir, "catalog.db"), Options{NoSync: true, InitialMmapSize: 16 << 20})
			if err != nil {
				t.Fatal(err)
			}
			r := &modelRun{
				t:   t,
				rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
				db:  db,
				m: &model{blobs: map[string]Blob{}, resv: map[uint64]Reservation{}, local: map[string]uint64{},
					reqs: map[uint64]Request{}, members: map[string]Member{}},
				dir: dir,
			}
			defer func() {
				if err := r.db.Close(); err != nil {
					t.Error(err)
				}
			}()
			restores := 0
			for i := range batches {
				r.batch()
				switch {
				case i%97 == 96:
					r.reopen()
					r.compareAll()
				case i%131 == 130:
					restores++
					r.restoreRoundTrip(restores)
					r.compareAll()
				case i%25 == 0:
					r.compareAll()
				}
			}
			r.compareAll()
			t.Logf("seed %d: %d blobs, %d reservations, %d local marks, %d requests, %d members, applied %d",
				seed, len(r.m.blobs), len(r.m.resv), len(r.m.local), len(r.m.reqs), len(r.m.members), r.m.applied)
		})
	}
}
