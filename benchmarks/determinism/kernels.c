/* Kernels for the determinism check (`wasmformer bench --determinism`): exported functions
 * invoked many times, with varied arguments, on one persistent instance, so a small prompt
 * is followed by a long trace. Together they use loads and stores of every width and
 * signedness, i64 arithmetic, mul/div/rem, recursion, a switch (br_table), function
 * pointers (call_indirect) and traps. No libc beyond what the compiler emits itself. */
#include <stdint.h>

#define EXPORT(name) __attribute__((export_name(name)))
#define BUF 4096

static uint8_t buf[BUF];
static int32_t nums[512];
static uint64_t state = 0x9e3779b97f4a7c15ull;

static uint64_t next(void) {  /* xorshift64*: i64 shifts, xor, mul */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dull;
}

EXPORT("reseed") int32_t reseed(int64_t seed) {
    state = (uint64_t)seed | 1;
    return (int32_t)next();
}

/* Stores of every width at unaligned offsets, loads of every width and signedness back. */
EXPORT("mix_memory") int64_t mix_memory(int32_t n, int32_t seed) {
    int64_t h = seed;
    for (int32_t i = 0; i < n; i++) {
        uint64_t r = next();
        uint32_t at = (uint32_t)(r >> 40) % (BUF - 8);
        switch ((r >> 8) & 3) {
            case 0: buf[at] = (uint8_t)r; break;
            case 1: *(volatile uint16_t *)(buf + at) = (uint16_t)r; break;
            case 2: *(volatile uint32_t *)(buf + at) = (uint32_t)r; break;
            default: *(volatile uint64_t *)(buf + at) = r; break;
        }
        uint32_t from = (uint32_t)(r >> 20) % (BUF - 8);
        h += *(volatile int8_t *)(buf + from);
        h ^= *(volatile uint8_t *)(buf + from + 1);
        h += *(volatile int16_t *)(buf + from + 2);
        h -= *(volatile uint16_t *)(buf + from + 3);
        h ^= (int64_t)*(volatile int32_t *)(buf + from + 1) << 7;
        h += *(volatile uint32_t *)(buf + from + 2);
        h = h * 31 + *(volatile int64_t *)(buf + from);
    }
    return h;
}

/* Signed and unsigned division and remainder, 32 and 64 bits; b == 0 traps (integer divide
 * by zero), INT_MIN / -1 traps (integer overflow). */
EXPORT("divide32") int32_t divide32(int32_t a, int32_t b) {
    return a / b + (int32_t)((uint32_t)a % (uint32_t)b) - a % b + (int32_t)((uint32_t)a / (uint32_t)b);
}

EXPORT("divide64") int64_t divide64(int64_t a, int64_t b) {
    return a / b - (int64_t)((uint64_t)a / (uint64_t)b) + a % b + (int64_t)((uint64_t)a % (uint64_t)b);
}

EXPORT("divsum") int64_t divsum(int32_t n, int32_t seed) {  /* many divisions, none by 0 */
    int64_t acc = seed;
    for (int32_t i = 1; i <= n; i++) {
        int64_t x = (int64_t)next();
        int32_t y = (int32_t)(x >> 32) | 1;
        acc += x / (int64_t)(i * 7 + 1) + (x % y) + (uint32_t)x / (uint32_t)i + (int32_t)x % i;
    }
    return acc;
}

/* Quicksort of nums[0..n): recursion, i32 loads and stores. */
static void quicksort(int32_t *a, int32_t lo, int32_t hi) {
    while (lo < hi) {
        int32_t p = a[(lo + hi) >> 1], i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { int32_t t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { quicksort(a, lo, j); lo = i; }
        else { quicksort(a, i, hi); hi = j; }
    }
}

EXPORT("sort") int32_t sort(int32_t n, int32_t modulus) {
    if (n > 512) n = 512;
    for (int32_t i = 0; i < n; i++) nums[i] = (int32_t)(next() % (uint32_t)modulus) - modulus / 2;
    quicksort(nums, 0, n - 1);
    int32_t check = 0;
    for (int32_t i = 1; i < n; i++) check += nums[i] >= nums[i - 1];
    return check * 1000 + (n ? nums[0] : 0);
}

/* Recursion: naive Fibonacci (i64), Ackermann (deep), and a depth that may exhaust the call
 * stack (a trap). */
EXPORT("fib") int64_t fib(int32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

EXPORT("ackermann") int32_t ackermann(int32_t m, int32_t n) {
    if (m == 0) return n + 1;
    if (n == 0) return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

EXPORT("depth") int32_t depth(int32_t n, int32_t seed) {  /* no shadow-stack frame: a trap
                                                            leaves __stack_pointer as it was */
    return n <= 0 ? seed : (depth(n - 1, seed) ^ n) * 3;
}

/* A bytecode interpreter: switch dispatch (br_table) and a table of function pointers
 * (call_indirect), over a random program. */
typedef int64_t (*binop)(int64_t, int64_t);
static int64_t op_add(int64_t a, int64_t b) { return a + b; }
static int64_t op_sub(int64_t a, int64_t b) { return a - b; }
static int64_t op_mul(int64_t a, int64_t b) { return a * b; }
static int64_t op_xor(int64_t a, int64_t b) { return a ^ b; }
static int64_t op_rotl(int64_t a, int64_t b) {
    uint64_t x = (uint64_t)a; unsigned s = (unsigned)b & 63;
    return (int64_t)((x << s) | (x >> ((64 - s) & 63)));
}
static int64_t op_div(int64_t a, int64_t b) { return b ? a / b : a; }
static int64_t op_shr(int64_t a, int64_t b) { return a >> (b & 63); }
static binop ops[] = {op_add, op_sub, op_mul, op_xor, op_rotl, op_div, op_shr};

EXPORT("interpret") int64_t interpret(int32_t steps, int32_t seed) {
    int64_t stack[16];
    int32_t sp = 0;
    uint32_t r = (uint32_t)seed;
    stack[sp++] = seed;
    for (int32_t i = 0; i < steps; i++) {
        r = r * 1103515245u + 12345u;
        uint32_t op = (r >> 16) % 10;
        switch (op) {
            case 0: if (sp < 16) stack[sp++] = (int64_t)(r >> 3); break;
            case 1: if (sp < 16) { stack[sp] = stack[sp - 1]; sp++; } break;
            case 2: if (sp > 1) sp--; break;
            case 3: stack[sp - 1] = -stack[sp - 1]; break;
            case 4: stack[sp - 1] = (int64_t)(int32_t)stack[sp - 1]; break;
            case 5: stack[sp - 1] = (int64_t)(int16_t)stack[sp - 1] * 3; break;
            default:
                if (sp > 1) { stack[sp - 2] = ops[(r >> 8) % 7](stack[sp - 2], stack[sp - 1]); sp--; }
                else stack[0] = ops[op % 7](stack[0], (int64_t)r);
        }
    }
    int64_t h = 0;
    for (int32_t i = 0; i < sp; i++) h = h * 1000003 + stack[i];
    return h;
}

/* Bit operations: clz, ctz, popcount, rotations on 32 and 64 bits. */
EXPORT("bits") int64_t bits(int32_t n, int64_t x) {
    int64_t acc = 0;
    for (int32_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)x ^ next();
        uint32_t w = (uint32_t)v;
        acc += __builtin_popcountll(v) + (v ? __builtin_clzll(v) : 64) + (w ? __builtin_ctz(w) : 32);
        acc ^= (int64_t)((w << (i & 31)) | (w >> ((32 - (i & 31)) & 31)));
        acc += (int64_t)(v >> (i & 63)) - ((int64_t)v >> (i & 63));
        acc += (uint32_t)(acc < (int64_t)v) + (int32_t)(w > (uint32_t)x);
    }
    return acc;
}

/* Traps on purpose: an out-of-bounds load, unreachable. */
EXPORT("peek") int32_t peek(int32_t address) { return *(volatile int32_t *)(intptr_t)address; }
EXPORT("crash") int32_t crash(int32_t x) { if (x & 1) __builtin_trap(); return x; }

/* memory.size, and memory.grow by a page at most up to a cap (the model grows to its own
 * page cap; the host allows the same). */
EXPORT("grow") int32_t grow(int32_t cap) {
    int32_t pages = (int32_t)__builtin_wasm_memory_size(0);
    if (pages < cap) return (int32_t)__builtin_wasm_memory_grow(0, 1);
    return -pages;
}

int main(void) { return 0; }
