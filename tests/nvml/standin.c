/*
 * A stand-in libnvidia-ml.so.1 for llmtop's tests: the NVML entry points llmtop calls through
 * nvml-wrapper, answering from a scripted timeline instead of a GPU. The test suite compiles
 * it (tests/support/nvml.rs) and llmtop loads it through LLMTOP_NVML_LIBRARY (test-only).
 *
 * The timeline is the file named by $LLMTOP_NVML_TIMELINE, else the file "timeline" beside the
 * library (so tests in one process can each load their own copy). Format: one directive a
 * line, '#' starts a comment; "board" starts a board and the lines after it describe it.
 *
 *   epoch_ns N          t = 0 is CLOCK_MONOTONIC N ns (default: the first nvmlInit)
 *   driver 550.54.15    what nvmlSystemGetDriverVersion says
 *   record PATH         append "board limit_mw t" to PATH on each accepted power-limit set
 *   board
 *   name NVIDIA H100 80GB HBM3
 *   arch ampere         ampere: power_usage is a 1 s trailing average and the instant field
 *                       NVML_FI_DEV_POWER_INSTANT exists; volta: power_usage is instant, no
 *                       field; pascal: as volta, and no total-energy counter either
 *   power T W           a knot of true power (W) at T s; power is linear between knots, a
 *                       step is two knots at one T, constant before the first and after the last
 *   counter_phase S     the board's 100 ms update grid is offset by S s (boards are not in step)
 *   energy_base_mj N    the counter's value at t = 0 (it counts since driver load)
 *   temp C SLOWDOWN SHUTDOWN
 *   fan PERCENT [RPM]   one fan; without RPM, nvmlDeviceGetFanSpeedRPM is NOT_SUPPORTED for it
 *   clock gfx|sm|mem CUR MAX   MHz
 *   throttle BITS       clocks-event reason bits
 *   vram USED TOTAL     bytes
 *   util GPU MEM        percent
 *   limit CUR MIN MAX DEFAULT  power-management limits, W
 *   bus_width BITS
 *   process PID SM MEM VRAM    a compute process, its SM and memory utilisation (percent, one
 *                       sample each 100 ms, the last 2 s kept) and the VRAM it holds (bytes)
 *   fail CALL CODE [FROM]  CALL (an entry point's name, or * for every call on this board)
 *                       returns CODE (NOT_SUPPORTED, NO_PERMISSION, GPU_IS_LOST, UNKNOWN or a
 *                       number) from FROM s on (default: always)
 *
 * Every reading updates on the board's 100 ms grid, as a real board's do: the total-energy
 * counter (mJ) is the true integral up to the last grid point; power_usage (ampere) the average
 * over the second before it; the instant field the true power at it. Time is CLOCK_MONOTONIC.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int nvmlReturn_t;
enum {
    OK = 0,
    ERR_UNINITIALIZED = 1,
    ERR_INVALID_ARGUMENT = 2,
    ERR_NOT_SUPPORTED = 3,
    ERR_NO_PERMISSION = 4,
    ERR_NOT_FOUND = 6,
    ERR_INSUFFICIENT_SIZE = 7,
    ERR_DRIVER_NOT_LOADED = 9,
    ERR_GPU_IS_LOST = 15,
    ERR_ARGUMENT_VERSION_MISMATCH = 25,
    ERR_UNKNOWN = 999,
};

enum { PASCAL, VOLTA, AMPERE };

#define MAX_BOARDS 16
#define MAX_KNOTS 512
#define MAX_FANS 8
#define MAX_PROCS 16
#define MAX_FAILS 32
#define GRID_S 0.1
#define KEPT_S 2.0
#define FI_TOTAL_ENERGY 83
#define FI_POWER_INSTANT 186
#define NONE_ID 0xFFFFFFFFu

struct fail {
    char call[64];
    int code;
    double from;
};

struct proc {
    unsigned pid, sm, mem;
    unsigned long long vram;
};

struct board {
    char name[96];
    int arch;
    int nknots;
    double kt[MAX_KNOTS], kw[MAX_KNOTS];
    double phase;
    unsigned long long base_mj;
    unsigned temp, slowdown, shutdown;
    int nfans;
    unsigned fan_pct[MAX_FANS], fan_rpm[MAX_FANS];
    unsigned clk[3], clk_max[3]; /* graphics, sm, memory: NVML's clock type order */
    unsigned long long reasons;
    unsigned long long vram_used, vram_total;
    unsigned util_gpu, util_mem;
    unsigned limit_mw, limit_min_mw, limit_max_mw, limit_default_mw;
    unsigned bus_width;
    int nprocs;
    struct proc procs[MAX_PROCS];
    int nfails;
    struct fail fails[MAX_FAILS];
};

static struct board boards[MAX_BOARDS];
static int nboards;
static int loaded;
static double epoch_s = -1.0; /* CLOCK_MONOTONIC seconds of t = 0 */
static double mono_to_real_s;  /* CLOCK_REALTIME - CLOCK_MONOTONIC, for sample timestamps */
static char driver[80] = "550.54.15";
static char record_path[512];

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_t(void) { return clock_s(CLOCK_MONOTONIC) - epoch_s; }

/* ---- the timeline ---------------------------------------------------------------------- */

/* True power on piece i: before knot 0 (i = 0), between knots i-1 and i, after the last. */
static double piece_w(const struct board *b, int i, double t) {
    if (b->nknots == 0) return 0.0;
    if (i <= 0) return b->kw[0];
    if (i >= b->nknots) return b->kw[b->nknots - 1];
    double t0 = b->kt[i - 1], t1 = b->kt[i];
    double f = t1 > t0 ? (t - t0) / (t1 - t0) : 1.0;
    return b->kw[i - 1] + (b->kw[i] - b->kw[i - 1]) * f;
}

static double power_w(const struct board *b, double t) {
    int i = 0;
    while (i < b->nknots && b->kt[i] <= t) i++;
    return piece_w(b, i, t);
}

/* Joules from t = 0 to t: each piece is linear, so its trapezoid is exact. */
static double energy_j(const struct board *b, double t) {
    double lo = t < 0.0 ? t : 0.0, hi = t < 0.0 ? 0.0 : t, sum = 0.0;
    for (int i = 0; i <= b->nknots; i++) {
        double a = i == 0 ? -INFINITY : b->kt[i - 1];
        double c = i == b->nknots ? INFINITY : b->kt[i];
        if (a < lo) a = lo;
        if (c > hi) c = hi;
        if (c > a) sum += (c - a) * (piece_w(b, i, a) + piece_w(b, i, c)) / 2.0;
    }
    return t < 0.0 ? -sum : sum;
}

/* The last point of the board's 100 ms update grid at or before t. */
static double grid(const struct board *b, double t) {
    return floor((t - b->phase) / GRID_S) * GRID_S + b->phase;
}

static unsigned long long counter_mj(const struct board *b, double t) {
    double mj = (double)b->base_mj + energy_j(b, grid(b, t)) * 1e3;
    return mj > 0.0 ? (unsigned long long)mj : 0ULL;
}

static int parse_code(const char *s) {
    static const struct { const char *name; int code; } names[] = {
        {"NOT_SUPPORTED", ERR_NOT_SUPPORTED}, {"NO_PERMISSION", ERR_NO_PERMISSION},
        {"GPU_IS_LOST", ERR_GPU_IS_LOST},     {"UNKNOWN", ERR_UNKNOWN},
        {"NOT_FOUND", ERR_NOT_FOUND},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) return names[i].code;
    return atoi(s);
}

/* One directive; 0 when it cannot be understood. */
static int directive(char *line) {
    char word[32] = "", a[512] = "";
    if (sscanf(line, "%31s", word) != 1) return 1;
    char *rest = line + strspn(line, " \t");
    rest += strlen(word);
    rest += strspn(rest, " \t");
    if (strcmp(word, "board") == 0) {
        if (nboards == MAX_BOARDS) return 0;
        struct board *b = &boards[nboards++];
        memset(b, 0, sizeof *b);
        snprintf(b->name, sizeof b->name, "NVIDIA Stand-in GPU %d", nboards - 1);
        b->arch = AMPERE;
        b->base_mj = 1000000000ULL;
        return 1;
    }
    if (strcmp(word, "epoch_ns") == 0) {
        epoch_s = strtod(rest, NULL) * 1e-9;
        return 1;
    }
    if (strcmp(word, "driver") == 0) return snprintf(driver, sizeof driver, "%s", rest) > 0;
    if (strcmp(word, "record") == 0)
        return snprintf(record_path, sizeof record_path, "%s", rest) > 0;
    if (nboards == 0) return 0;
    struct board *b = &boards[nboards - 1];
    if (strcmp(word, "name") == 0) return snprintf(b->name, sizeof b->name, "%s", rest) > 0;
    if (strcmp(word, "arch") == 0) {
        if (sscanf(rest, "%511s", a) != 1) return 0;
        b->arch = strcmp(a, "pascal") == 0 ? PASCAL : strcmp(a, "volta") == 0 ? VOLTA : AMPERE;
        return strcmp(a, "pascal") == 0 || strcmp(a, "volta") == 0 || strcmp(a, "ampere") == 0;
    }
    if (strcmp(word, "power") == 0) {
        if (b->nknots == MAX_KNOTS) return 0;
        double t, w;
        if (sscanf(rest, "%lf %lf", &t, &w) != 2) return 0;
        if (b->nknots > 0 && t < b->kt[b->nknots - 1]) return 0;
        b->kt[b->nknots] = t;
        b->kw[b->nknots++] = w;
        return 1;
    }
    if (strcmp(word, "counter_phase") == 0) return sscanf(rest, "%lf", &b->phase) == 1;
    if (strcmp(word, "energy_base_mj") == 0) return sscanf(rest, "%llu", &b->base_mj) == 1;
    if (strcmp(word, "temp") == 0)
        return sscanf(rest, "%u %u %u", &b->temp, &b->slowdown, &b->shutdown) == 3;
    if (strcmp(word, "fan") == 0) {
        if (b->nfans == MAX_FANS) return 0;
        int n = sscanf(rest, "%u %u", &b->fan_pct[b->nfans], &b->fan_rpm[b->nfans]);
        if (n < 1) return 0;
        if (n == 1) b->fan_rpm[b->nfans] = 0;
        b->nfans++;
        return 1;
    }
    if (strcmp(word, "clock") == 0) {
        unsigned cur, max;
        if (sscanf(rest, "%511s %u %u", a, &cur, &max) != 3) return 0;
        int k = strcmp(a, "gfx") == 0 ? 0 : strcmp(a, "sm") == 0 ? 1 : strcmp(a, "mem") == 0 ? 2 : -1;
        if (k < 0) return 0;
        b->clk[k] = cur;
        b->clk_max[k] = max;
        return 1;
    }
    if (strcmp(word, "throttle") == 0) {
        b->reasons = strtoull(rest, NULL, 0);
        return 1;
    }
    if (strcmp(word, "vram") == 0)
        return sscanf(rest, "%llu %llu", &b->vram_used, &b->vram_total) == 2;
    if (strcmp(word, "util") == 0) return sscanf(rest, "%u %u", &b->util_gpu, &b->util_mem) == 2;
    if (strcmp(word, "limit") == 0) {
        double w[4];
        if (sscanf(rest, "%lf %lf %lf %lf", &w[0], &w[1], &w[2], &w[3]) != 4) return 0;
        b->limit_mw = (unsigned)(w[0] * 1e3);
        b->limit_min_mw = (unsigned)(w[1] * 1e3);
        b->limit_max_mw = (unsigned)(w[2] * 1e3);
        b->limit_default_mw = (unsigned)(w[3] * 1e3);
        return 1;
    }
    if (strcmp(word, "bus_width") == 0) return sscanf(rest, "%u", &b->bus_width) == 1;
    if (strcmp(word, "process") == 0) {
        if (b->nprocs == MAX_PROCS) return 0;
        struct proc *p = &b->procs[b->nprocs];
        if (sscanf(rest, "%u %u %u %llu", &p->pid, &p->sm, &p->mem, &p->vram) != 4) return 0;
        b->nprocs++;
        return 1;
    }
    if (strcmp(word, "fail") == 0) {
        if (b->nfails == MAX_FAILS) return 0;
        struct fail *f = &b->fails[b->nfails];
        char code[32];
        f->from = -INFINITY;
        int n = sscanf(rest, "%63s %31s %lf", f->call, code, &f->from);
        if (n < 2) return 0;
        f->code = parse_code(code);
        b->nfails++;
        return f->code != 0;
    }
    return 0;
}

static const char *timeline_path(char *buf, size_t len) {
    const char *env = getenv("LLMTOP_NVML_TIMELINE");
    if (env && *env) return env;
    Dl_info info;
    if (!dladdr((void *)&timeline_path, &info) || !info.dli_fname) return NULL;
    const char *slash = strrchr(info.dli_fname, '/');
    int dir = slash ? (int)(slash - info.dli_fname) : 1;
    snprintf(buf, len, "%.*s/timeline", dir, slash ? info.dli_fname : ".");
    return buf;
}

static nvmlReturn_t load(void) {
    if (loaded) return OK;
    char buf[4096];
    const char *path = timeline_path(buf, sizeof buf);
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return ERR_DRIVER_NOT_LOADED;
    char line[1024];
    int n = 0, ok = 1;
    while (ok && fgets(line, sizeof line, f)) {
        n++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        line[strcspn(line, "\r\n")] = 0;
        for (char *e = line + strlen(line); e > line && (e[-1] == ' ' || e[-1] == '\t');) *--e = 0;
        if (!directive(line)) {
            fprintf(stderr, "nvml stand-in: %s:%d: cannot read \"%s\"\n", path, n, line);
            ok = 0;
        }
    }
    fclose(f);
    if (!ok) {
        nboards = 0;
        return ERR_UNKNOWN;
    }
    if (epoch_s < 0.0) epoch_s = clock_s(CLOCK_MONOTONIC);
    mono_to_real_s = clock_s(CLOCK_REALTIME) - clock_s(CLOCK_MONOTONIC);
    loaded = 1;
    return OK;
}

/* ---- entry points ---------------------------------------------------------------------- */

typedef struct board *nvmlDevice_t;

/* What a call on board b returns before it does anything: lost, unsupported, refused. */
static nvmlReturn_t gate(const struct board *b, const char *call) {
    if (!loaded) return ERR_UNINITIALIZED;
    if (b < boards || b >= boards + nboards) return ERR_INVALID_ARGUMENT;
    double t = now_t();
    for (int i = 0; i < b->nfails; i++) {
        const struct fail *f = &b->fails[i];
        if ((strcmp(f->call, "*") == 0 || strcmp(f->call, call) == 0) && t >= f->from)
            return f->code;
    }
    return OK;
}

#define GATE(b)                                   \
    do {                                          \
        nvmlReturn_t g_ = gate((b), __func__);    \
        if (g_ != OK) return g_;                  \
    } while (0)

nvmlReturn_t nvmlInit_v2(void) { return load(); }
nvmlReturn_t nvmlShutdown(void) { return OK; }

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned length) {
    if (!loaded) return ERR_UNINITIALIZED;
    if (!version || length <= strlen(driver)) return ERR_INSUFFICIENT_SIZE;
    strcpy(version, driver);
    return OK;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    if (!loaded) return ERR_UNINITIALIZED;
    if (!count) return ERR_INVALID_ARGUMENT;
    *count = (unsigned)nboards;
    return OK;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device) {
    if (!loaded) return ERR_UNINITIALIZED;
    if (index >= (unsigned)nboards || !device) return ERR_INVALID_ARGUMENT;
    GATE(&boards[index]);
    *device = &boards[index];
    return OK;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned length) {
    GATE(d);
    if (!name || length <= strlen(d->name)) return ERR_INSUFFICIENT_SIZE;
    strcpy(name, d->name);
    return OK;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw) {
    GATE(d);
    double g = grid(d, now_t());
    double w = d->arch == AMPERE ? energy_j(d, g) - energy_j(d, g - 1.0) : power_w(d, g);
    *mw = (unsigned)lround(w * 1e3);
    return OK;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    GATE(d);
    if (d->arch == PASCAL) return ERR_NOT_SUPPORTED;
    *mj = counter_mj(d, now_t());
    return OK;
}

typedef struct {
    unsigned fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType;
    int nvmlReturn;
    union {
        double dVal;
        int siVal;
        unsigned uiVal;
        unsigned long ulVal;
        unsigned long long ullVal;
        long long sllVal;
        unsigned short usVal;
    } value;
} nvmlFieldValue_t;

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t *values) {
    GATE(d);
    if (count <= 0 || !values) return ERR_INVALID_ARGUMENT;
    double t = now_t(), g = grid(d, t);
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = (long long)llround((epoch_s + g + mono_to_real_s) * 1e6);
        v->latencyUsec = 0;
        v->nvmlReturn = ERR_NOT_SUPPORTED;
        if (v->fieldId == FI_POWER_INSTANT && d->arch == AMPERE) {
            v->valueType = 1; /* NVML_VALUE_TYPE_UNSIGNED_INT, mW */
            v->value.uiVal = (unsigned)lround(power_w(d, g) * 1e3);
            v->nvmlReturn = OK;
        } else if (v->fieldId == FI_TOTAL_ENERGY && d->arch != PASCAL) {
            v->valueType = 3; /* NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, mJ */
            v->value.ullVal = counter_mj(d, t);
            v->nvmlReturn = OK;
        }
    }
    return OK;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *c) {
    GATE(d);
    if (sensor != 0) return ERR_INVALID_ARGUMENT;
    *c = d->temp;
    return OK;
}

nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t d, int kind, unsigned *c) {
    GATE(d);
    if (kind == 0 && d->shutdown) *c = d->shutdown;
    else if (kind == 1 && d->slowdown) *c = d->slowdown;
    else return ERR_NOT_SUPPORTED;
    return OK;
}

nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t d, unsigned *n) {
    GATE(d);
    if (d->nfans == 0) return ERR_NOT_SUPPORTED;
    *n = (unsigned)d->nfans;
    return OK;
}

nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t d, unsigned fan, unsigned *pct) {
    GATE(d);
    if (fan >= (unsigned)d->nfans) return ERR_INVALID_ARGUMENT;
    *pct = d->fan_pct[fan];
    return OK;
}

typedef struct {
    unsigned version, fan, speed;
} nvmlFanSpeedInfo_t;

nvmlReturn_t nvmlDeviceGetFanSpeedRPM(nvmlDevice_t d, nvmlFanSpeedInfo_t *info) {
    GATE(d);
    if (info->version != (sizeof(nvmlFanSpeedInfo_t) | 1u << 24))
        return ERR_ARGUMENT_VERSION_MISMATCH;
    if (info->fan >= (unsigned)d->nfans) return ERR_INVALID_ARGUMENT;
    if (d->fan_rpm[info->fan] == 0) return ERR_NOT_SUPPORTED;
    info->speed = d->fan_rpm[info->fan];
    return OK;
}

typedef struct {
    unsigned gpu, memory;
} nvmlUtilization_t;

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    GATE(d);
    u->gpu = d->util_gpu;
    u->memory = d->util_mem;
    return OK;
}

typedef struct {
    unsigned version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    GATE(d);
    if (m->version != (sizeof(nvmlMemory_v2_t) | 2u << 24)) return ERR_ARGUMENT_VERSION_MISMATCH;
    if (d->vram_total == 0) return ERR_NOT_SUPPORTED;
    m->total = d->vram_total;
    m->reserved = 0;
    m->used = d->vram_used;
    m->free = d->vram_total - d->vram_used;
    return OK;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned *mhz) {
    GATE(d);
    if (type < 0 || type > 2 || d->clk_max[type] == 0) return ERR_NOT_SUPPORTED;
    *mhz = d->clk[type];
    return OK;
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, int type, unsigned *mhz) {
    GATE(d);
    if (type < 0 || type > 2 || d->clk_max[type] == 0) return ERR_NOT_SUPPORTED;
    *mhz = d->clk_max[type];
    return OK;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *r) {
    GATE(d);
    *r = d->reasons;
    return OK;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw) {
    GATE(d);
    if (d->limit_mw == 0) return ERR_NOT_SUPPORTED;
    *mw = d->limit_mw;
    return OK;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned *mw) {
    GATE(d);
    if (d->limit_mw == 0) return ERR_NOT_SUPPORTED;
    *mw = d->limit_mw;
    return OK;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t d, unsigned *min,
                                                          unsigned *max) {
    GATE(d);
    if (d->limit_mw == 0) return ERR_NOT_SUPPORTED;
    *min = d->limit_min_mw;
    *max = d->limit_max_mw;
    return OK;
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t d, unsigned *mw) {
    GATE(d);
    if (d->limit_mw == 0) return ERR_NOT_SUPPORTED;
    *mw = d->limit_default_mw;
    return OK;
}

nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t d, unsigned mw) {
    GATE(d);
    if (d->limit_mw == 0) return ERR_NOT_SUPPORTED;
    if (mw < d->limit_min_mw || mw > d->limit_max_mw) return ERR_INVALID_ARGUMENT;
    d->limit_mw = mw;
    if (record_path[0]) {
        FILE *f = fopen(record_path, "a");
        if (f) {
            fprintf(f, "%d %u %.3f\n", (int)(d - boards), mw, now_t());
            fclose(f);
        }
    }
    return OK;
}

/* Not read by llmtop yet: for the roofline's memory bandwidth (memory clock x bus width). */
nvmlReturn_t nvmlDeviceGetMemoryBusWidth(nvmlDevice_t d, unsigned *bits) {
    GATE(d);
    if (d->bus_width == 0) return ERR_NOT_SUPPORTED;
    *bits = d->bus_width;
    return OK;
}

typedef struct {
    unsigned pid;
    unsigned long long usedGpuMemory;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned *count,
                                                     nvmlProcessInfo_t *infos) {
    GATE(d);
    if (!count) return ERR_INVALID_ARGUMENT;
    unsigned n = (unsigned)d->nprocs;
    if (*count < n || !infos) {
        *count = n;
        return n ? ERR_INSUFFICIENT_SIZE : OK;
    }
    for (unsigned i = 0; i < n; i++) {
        infos[i].pid = d->procs[i].pid;
        infos[i].usedGpuMemory = d->procs[i].vram;
        infos[i].gpuInstanceId = NONE_ID;
        infos[i].computeInstanceId = NONE_ID;
    }
    *count = n;
    return OK;
}

typedef struct {
    unsigned pid;
    unsigned long long timeStamp;
    unsigned smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

/* The driver keeps the last KEPT_S of samples, one per busy process every 100 ms; a call
 * returns those newer than lastSeenTimeStamp (µs, CLOCK_REALTIME like the driver's), newest
 * last, or NOT_FOUND when there are none. Asked for the size, it answers the most it keeps. */
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t d,
                                             nvmlProcessUtilizationSample_t *out,
                                             unsigned *count, unsigned long long last_seen) {
    GATE(d);
    if (!count) return ERR_INVALID_ARGUMENT;
    unsigned most = (unsigned)(d->nprocs * (int)(KEPT_S / GRID_S + 1.5));
    if (!out) {
        *count = most;
        return ERR_INSUFFICIENT_SIZE;
    }
    double g = grid(d, now_t());
    unsigned n = 0;
    for (int k = (int)(KEPT_S / GRID_S); k >= 0; k--) {
        double at = g - k * GRID_S;
        unsigned long long ts =
            (unsigned long long)llround((epoch_s + at + mono_to_real_s) * 1e6);
        if (ts <= last_seen) continue;
        for (int i = 0; i < d->nprocs; i++) {
            const struct proc *p = &d->procs[i];
            if (p->sm == 0 && p->mem == 0) continue;
            if (n == *count) return ERR_INSUFFICIENT_SIZE;
            out[n++] = (nvmlProcessUtilizationSample_t){p->pid, ts, p->sm, p->mem, 0, 0};
        }
    }
    *count = n;
    return n ? OK : ERR_NOT_FOUND;
}
