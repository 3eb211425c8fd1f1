// Go's own sync.Map on the lab's routing workload, for a side-by-side run with
// `cargo bench -p readmostly-lab -- --workloads routing` (see run.sh beside this
// file, and docs/performance.md).
//
// The workload is the lab's: 10,000 keys shaped like routes ("/svc/01234/route"),
// every one present from the start, chosen by a Zipf distribution with s = 0.99
// over the 10,000 keys (hottest first); 99.9% Load, 0.1% Store of an existing
// key (an overwrite). Each goroutine walks a pre-generated stream of operations
// cyclically, so choosing keys costs nothing in the timed loop. GOMAXPROCS is the
// machine's core count unless set.
//
// Which sync.Map this measures depends on the Go toolchain that builds it: up to
// Go 1.23 the read/dirty design readmostly's ClassicSyncMap ports; from Go 1.24 a
// hash-trie (GOEXPERIMENT=nosynchashtriemap selects the old one). The program
// prints the version.
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const keys = 10000

type op struct {
	key   int32
	store bool
}

// zipfStream draws n key indices with P(k) proportional to 1/(k+1)^s.
func zipfStream(rng *rand.Rand, n int, s float64) []op {
	cdf := make([]float64, keys)
	total := 0.0
	for k := 0; k < keys; k++ {
		total += 1 / math.Pow(float64(k+1), s)
		cdf[k] = total
	}
	ops := make([]op, n)
	for i := range ops {
		u := rng.Float64() * total
		k := sort.SearchFloat64s(cdf, u)
		if k >= keys {
			k = keys - 1
		}
		ops[i] = op{key: int32(k), store: rng.Intn(1000) == 0}
	}
	return ops
}

func run(m *sync.Map, names []string, streams [][]op, dur time.Duration) (float64, uint64) {
	var stop atomic.Bool
	var start sync.WaitGroup
	var done sync.WaitGroup
	counts := make([]uint64, len(streams))
	misses := make([]uint64, len(streams))
	start.Add(len(streams))
	done.Add(len(streams))
	for t := range streams {
		go func(t int) {
			defer done.Done()
			ops := streams[t]
			var n, miss uint64
			value := uint64(t)
			start.Done()
			start.Wait()
			i := 0
			for !stop.Load() {
				for j := 0; j < 1024; j++ {
					o := ops[i]
					i++
					if i == len(ops) {
						i = 0
					}
					if o.store {
						value++
						m.Store(names[o.key], value)
					} else if _, ok := m.Load(names[o.key]); !ok {
						miss++
					}
				}
				n += 1024
			}
			counts[t] = n
			misses[t] = miss
		}(t)
	}
	start.Wait()
	began := time.Now()
	time.Sleep(dur)
	stop.Store(true)
	done.Wait()
	elapsed := time.Since(began).Seconds()
	var total, wrong uint64
	for t := range counts {
		total += counts[t]
		wrong += misses[t]
	}
	return float64(total) / elapsed / 1e6, wrong
}

func main() {
	threadsFlag := flag.String("threads", "1,2,4,8", "goroutine counts")
	durMs := flag.Int("duration-ms", 300, "per run")
	runs := flag.Int("runs", 5, "runs per thread count")
	flag.Parse()

	names := make([]string, keys)
	for k := range names {
		names[k] = fmt.Sprintf("/svc/%05d/route", k)
	}
	fmt.Printf("go sync.Map, routing: %s, GOMAXPROCS=%d, %d keys, Zipf 0.99, 99.9%% Load / 0.1%% Store\n",
		runtime.Version(), runtime.GOMAXPROCS(0), keys)
	for _, field := range strings.Split(*threadsFlag, ",") {
		var threads int
		if _, err := fmt.Sscan(field, &threads); err != nil || threads < 1 {
			fmt.Fprintf(os.Stderr, "bad thread count %q\n", field)
			os.Exit(2)
		}
		streams := make([][]op, threads)
		for t := range streams {
			streams[t] = zipfStream(rand.New(rand.NewSource(int64(42+t))), 1<<20, 0.99)
		}
		results := make([]float64, 0, *runs)
		for r := 0; r < *runs; r++ {
			m := new(sync.Map)
			for k := range names {
				m.Store(names[k], uint64(k))
			}
			// Go's design: a Load that misses the read map while new keys are
			// pending takes the mutex; after the fill, let misses promote dirty.
			for i := 0; i < 4*keys; i++ {
				m.Load(names[i%keys])
			}
			mops, wrong := run(m, names, streams, time.Duration(*durMs)*time.Millisecond)
			if wrong != 0 {
				fmt.Printf("  WRONG: %d loads of present keys found nothing\n", wrong)
			}
			results = append(results, mops)
		}
		sorted := append([]float64(nil), results...)
		sort.Float64s(sorted)
		fmt.Printf("threads %d: median %.2f Mops/s (runs:", threads, sorted[len(sorted)/2])
		for _, x := range results {
			fmt.Printf(" %.2f", x)
		}
		fmt.Println(")")
	}
}
