/* Sorting with the C library's qsort and comparator callbacks: numbers
   ascending and descending, then strings. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT 100

static int ascending(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y); /* not x - y: that overflows for far-apart values */
}

static int descending(const void *a, const void *b) { return ascending(b, a); }

static int by_string(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A fixed pseudo-random sequence (same on every C library, unlike rand()). */
static uint32_t lcg_state = 7;

static int next_random(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (int)(lcg_state >> 8);
}

static int is_sorted(const int *v, int n, int (*cmp)(const void *, const void *)) {
    for (int k = 1; k < n; k++)
        if (cmp(&v[k - 1], &v[k]) > 0) return 0;
    return 1;
}

int main(void) {
    static int values[COUNT];
    uint32_t checksum = 0;
    for (int k = 0; k < COUNT; k++) {
        values[k] = next_random() % 2000001 - 1000000; /* negative numbers too */
        checksum += (uint32_t)values[k];
    }

    qsort(values, COUNT, sizeof values[0], ascending);
    printf("ascending: %s; smallest %d %d %d; largest %d\n",
           is_sorted(values, COUNT, ascending) ? "sorted" : "NOT sorted",
           values[0], values[1], values[2], values[COUNT - 1]);
    qsort(values, COUNT, sizeof values[0], descending);
    printf("descending: %s; first %d; last %d\n",
           is_sorted(values, COUNT, descending) ? "sorted" : "NOT sorted",
           values[0], values[COUNT - 1]);

    uint32_t after = 0, weighted = 0;
    for (int k = 0; k < COUNT; k++) {
        after += (uint32_t)values[k];
        weighted = weighted * 31u + (uint32_t)values[k];
    }
    printf("checksum %08x before, %08x after; order hash %08x\n", checksum, after, weighted);

    const char *words[] = {"pear", "apple", "fig", "banana", "cherry", "date", "apricot", "kiwi"};
    int n = (int)(sizeof words / sizeof words[0]);
    qsort(words, (size_t)n, sizeof words[0], by_string);
    for (int k = 0; k < n; k++) printf("%s%s", words[k], k + 1 < n ? ", " : "\n");
    return 0;
}
