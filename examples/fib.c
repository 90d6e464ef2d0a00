/* Fibonacci numbers three ways: 32-bit with wraparound, 64-bit, and by
   naive recursion (many calls). */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

static unsigned fib_rec(unsigned n) {
    return n < 2 ? n : fib_rec(n - 1) + fib_rec(n - 2);
}

int main(void) {
    uint32_t a = 0, b = 1;
    for (int i = 0; i < 50; i++) {
        if (i % 10 == 0 || i >= 46) printf("fib32(%d) = %u\n", i, a);
        uint32_t t = a + b; /* wraps modulo 2^32 past fib(47) */
        a = b;
        b = t;
    }

    uint64_t x = 0, y = 1;
    for (int i = 0; i <= 93; i++) {
        if (i == 50 || i == 64 || i == 90 || i == 93)
            printf("fib64(%d) = %llu = 0x%llx\n", i, (unsigned long long)x, (unsigned long long)x);
        uint64_t t = x + y;
        x = y;
        y = t;
    }
    printf("fib64(94) wraps to %" PRIu64 "\n", x); /* the loop ran one step past 93 */

    printf("fib_rec(15) = %u\n", fib_rec(15));
    return 0;
}
