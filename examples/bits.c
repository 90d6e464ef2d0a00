/* Bit twiddling on 32- and 64-bit integers: population count, leading and
   trailing zeros, rotations, shifts (logical and arithmetic), signed
   division and remainder of negative numbers, sign extension. Values are
   passed through volatile variables so the compiler cannot fold them away. */
#include <stdint.h>
#include <stdio.h>

static uint32_t rotl32(uint32_t x, unsigned n) { return (x << (n & 31)) | (x >> ((32 - n) & 31)); }
static uint64_t rotr64(uint64_t x, unsigned n) { return (x >> (n & 63)) | (x << ((64 - n) & 63)); }

int main(void) {
    volatile uint32_t samples32[] = {0x00000001u, 0x80000000u, 0xDEADBEEFu, 0x0000F000u,
                                     0xFFFFFFFFu};
    volatile uint64_t samples64[] = {1ull, 0x8000000000000000ull, 0x0123456789ABCDEFull,
                                     0xFFFFFFFFFFFFFFFFull};

    for (int k = 0; k < 5; k++) {
        uint32_t x = samples32[k];
        printf("%08x: popcount %2d clz %2d ctz %2d rotl7 %08x shr5 %08x sar5 %08x\n", x,
               __builtin_popcount(x), __builtin_clz(x), __builtin_ctz(x), rotl32(x, 7), x >> 5,
               (uint32_t)((int32_t)x >> 5));
    }
    for (int k = 0; k < 4; k++) {
        uint64_t x = samples64[k];
        printf("%016llx: popcount %2d clz %2d ctz %2d rotr12 %016llx sar9 %llx\n",
               (unsigned long long)x, __builtin_popcountll(x), __builtin_clzll(x), __builtin_ctzll(x),
               (unsigned long long)rotr64(x, 12), (unsigned long long)((int64_t)x >> 9));
    }

    volatile int32_t num[] = {7, -7, 7, -7, INT32_MIN, -1};
    volatile int32_t den[] = {2, 2, -2, -2, 3, 5};
    for (int k = 0; k < 6; k++)
        printf("%d / %d = %d rem %d; as unsigned: %u / %u = %u rem %u\n", num[k], den[k],
               num[k] / den[k], num[k] % den[k], (uint32_t)num[k], (uint32_t)den[k],
               (uint32_t)num[k] / (uint32_t)den[k], (uint32_t)num[k] % (uint32_t)den[k]);

    volatile int64_t big = -1234567890123456789ll;
    volatile int64_t small = 1000000007ll;
    printf("%lld / %lld = %lld rem %lld\n", (long long)big, (long long)small,
           (long long)(big / small), (long long)(big % small));
    printf("%lld as unsigned: %llu = 0x%llx\n", (long long)big, (unsigned long long)big,
           (unsigned long long)big);

    volatile uint32_t byte = 0xF0u, half = 0x8001u;
    printf("sign-extend: int8 %d int16 %d int32->64 %lld\n", (int8_t)byte, (int16_t)half,
           (long long)(int32_t)0x80000000u);
    printf("64-bit multiply high part: %016llx\n",
           (unsigned long long)(((unsigned __int128)samples64[2] * samples64[3]) >> 64));
    return 0;
}
