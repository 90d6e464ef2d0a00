/* The Collatz conjecture: find the start below N with the longest chain
   n -> n/2 (n even), 3n+1 (n odd), down to 1. Chain lengths already known
   are cached, so each number is walked only until it meets one. */
#include <stdint.h>
#include <stdio.h>

#define N 1000

static uint16_t length[N];

static int chain_length(uint64_t n) {
    int steps = 0;
    while (n >= N || (n > 1 && length[n] == 0)) {
        n = (n & 1) ? 3 * n + 1 : n >> 1;
        steps++;
    }
    return steps + (n > 1 ? length[n] : 0);
}

int main(void) {
    int best = 1, best_len = 0;
    for (int start = 2; start < N; start++) {
        length[start] = (uint16_t)chain_length((uint64_t)start);
        if (length[start] > best_len) {
            best_len = length[start];
            best = start;
        }
    }
    printf("longest chain below %d starts at %d: %d steps\n", N, best, best_len);

    /* Walk it once more to find its peak, which overflows 16 bits. */
    uint64_t n = (uint64_t)best, peak = n;
    while (n != 1) {
        n = (n & 1) ? 3 * n + 1 : n / 2;
        if (n > peak) peak = n;
    }
    printf("its highest value is %llu\n", (unsigned long long)peak);
    printf("chain of 27: %d steps\n", length[27]);
    return 0;
}
