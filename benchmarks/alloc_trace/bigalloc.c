// Allocation tracer for the builder-memory figures (see README.md beside this file). An LD_PRELOAD shim: it tracks
// live allocations >= 1 MiB (malloc family and anonymous mmap) and writes the set live at the highest point so far
// (size, kind, caller frames as library+offset) to $BIGALLOC_OUT.<pid>.high on every new 128 MiB high, and the set
// live at exit to $BIGALLOC_OUT.<pid>.exit. Stripped libraries (TensorRT's) give offsets, not names: the sizes are
// what identify the buffers (one the size of all weights, one per fused weight group).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BIG (1u << 20)
#define SLOTS (1 << 20)
#define DEPTH 8
typedef struct { void *p; size_t n; void *bt[DEPTH]; int nbt; int kind; } rec;
static rec *tab; static size_t live, peak, snap_at, nlive;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int inside;
static void *(*r_malloc)(size_t); static void (*r_free)(void *); static void *(*r_calloc)(size_t, size_t);
static void *(*r_realloc)(void *, size_t); static int (*r_pm)(void **, size_t, size_t);
static void *(*r_aa)(size_t, size_t); static void *(*r_memalign)(size_t, size_t);
static void *(*r_mmap)(void *, size_t, int, int, int, off_t); static int (*r_munmap)(void *, size_t);
static char boot[1 << 16]; static size_t bootn;
static struct timespec t0;

static void init(void) {
  if (r_malloc) return;
  r_calloc = dlsym(RTLD_NEXT, "calloc"); r_malloc = dlsym(RTLD_NEXT, "malloc"); r_free = dlsym(RTLD_NEXT, "free");
  r_realloc = dlsym(RTLD_NEXT, "realloc"); r_pm = dlsym(RTLD_NEXT, "posix_memalign");
  r_aa = dlsym(RTLD_NEXT, "aligned_alloc"); r_memalign = dlsym(RTLD_NEXT, "memalign");
  r_mmap = dlsym(RTLD_NEXT, "mmap"); r_munmap = dlsym(RTLD_NEXT, "munmap");
  tab = r_mmap(0, sizeof(rec) * SLOTS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
}
static size_t h(void *p) { return ((uintptr_t)p >> 12) * 2654435761u % SLOTS; }
static void dump(const char *why) {
  const char *out = getenv("BIGALLOC_OUT"); if (!out) return;
  char path[512]; snprintf(path, sizeof path, "%s.%d.%s", out, getpid(), why);
  FILE *f = fopen(path, "w"); if (!f) return;
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  fprintf(f, "# %s t=%.1f live=%zu peak=%zu n=%zu\n", why, (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9, live, peak, nlive);
  for (size_t i = 0; i < SLOTS; i++) if (tab[i].p && tab[i].p != (void *)1) {
    fprintf(f, "%zu %d", tab[i].n, tab[i].kind);
    for (int j = 0; j < tab[i].nbt; j++) { Dl_info d; if (dladdr(tab[i].bt[j], &d) && d.dli_fname) {
        const char *b = strrchr(d.dli_fname, '/'); fprintf(f, " %s+0x%lx", b ? b + 1 : d.dli_fname, (unsigned long)((char *)tab[i].bt[j] - (char *)d.dli_fbase));
        if (d.dli_sname) fprintf(f, "(%s)", d.dli_sname); } else fprintf(f, " ?%p", tab[i].bt[j]); }
    fputc('\n', f);
  }
  fclose(f);
}
static void track(void *p, size_t n, int kind) {
  if (!p || n < BIG || inside) return;
  inside = 1;
  void *bt[DEPTH + 2]; int k = backtrace(bt, DEPTH + 2);
  pthread_mutex_lock(&mu);
  size_t i = h(p); while (tab[i].p && tab[i].p != (void *)1) i = (i + 1) % SLOTS;
  tab[i].p = p; tab[i].n = n; tab[i].kind = kind; tab[i].nbt = k > 2 ? k - 2 : 0;
  memcpy(tab[i].bt, bt + 2, sizeof(void *) * tab[i].nbt);
  live += n; nlive++;
  if (live > peak) { peak = live; if (peak > snap_at + (128u << 20)) { snap_at = peak; dump("high"); } }
  pthread_mutex_unlock(&mu);
  inside = 0;
}
static void untrack(void *p) {
  if (!p || !tab || inside) return;
  pthread_mutex_lock(&mu);
  size_t i = h(p);
  while (tab[i].p) { if (tab[i].p == p) { live -= tab[i].n; nlive--; tab[i].p = (void *)1; break; } i = (i + 1) % SLOTS; }
  pthread_mutex_unlock(&mu);
}
void *malloc(size_t n) { init(); void *p = r_malloc(n); track(p, n, 0); return p; }
void *calloc(size_t a, size_t b) {
  if (!r_calloc) { size_t n = (a * b + 15) & ~15ul; void *p = boot + bootn; bootn += n; return p; }
  void *p = r_calloc(a, b); track(p, a * b, 0); return p; }
void free(void *p) { if ((char *)p >= boot && (char *)p < boot + sizeof boot) return; init(); untrack(p); r_free(p); }
void *realloc(void *q, size_t n) { init(); untrack(q); void *p = r_realloc(q, n); track(p, n, 0); return p; }
int posix_memalign(void **pp, size_t a, size_t n) { init(); int r = r_pm(pp, a, n); if (!r) track(*pp, n, 0); return r; }
void *aligned_alloc(size_t a, size_t n) { init(); void *p = r_aa(a, n); track(p, n, 0); return p; }
void *memalign(size_t a, size_t n) { init(); void *p = r_memalign(a, n); track(p, n, 0); return p; }
void *mmap(void *a, size_t n, int pr, int fl, int fd, off_t o) {
  init(); void *p = r_mmap(a, n, pr, fl, fd, o);
  if (p != MAP_FAILED && (fl & MAP_ANONYMOUS)) track(p, n, 1);
  else if (p != MAP_FAILED && n >= BIG && !inside) { /* file mapping: log once */ }
  return p; }
void *mmap64(void *a, size_t n, int pr, int fl, int fd, off_t o) { return mmap(a, n, pr, fl, fd, o); }
int munmap(void *p, size_t n) { init(); untrack(p); return r_munmap(p, n); }
__attribute__((destructor)) static void fin(void) { inside = 1; pthread_mutex_lock(&mu); dump("exit"); pthread_mutex_unlock(&mu); }
