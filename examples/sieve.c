/* The sieve of Eratosthenes: cross out the multiples of each prime. */
#include <stdio.h>
#include <string.h>

#define LIMIT 2000

static unsigned char composite[LIMIT];

int main(void) {
    memset(composite, 0, sizeof composite);
    for (int p = 2; p * p < LIMIT; p++)
        if (!composite[p])
            for (int m = p * p; m < LIMIT; m += p) composite[m] = 1;

    int count = 0, last[5] = {0};
    for (int n = 2; n < LIMIT; n++) {
        if (composite[n]) continue;
        last[count % 5] = n;
        count++;
    }
    printf("%d primes below %d\n", count, LIMIT);
    printf("the largest five:");
    for (int k = 0; k < 5; k++) printf(" %d", last[(count + k) % 5]);
    printf("\n");

    int twins = 0;
    for (int n = 3; n + 2 < LIMIT; n += 2)
        if (!composite[n] && !composite[n + 2]) twins++;
    printf("%d twin prime pairs\n", twins);
    return 0;
}
