/* A program that gives up with abort(), which in WebAssembly is the
   `unreachable` trap: the run ends with exit code 134. (assert() would do
   the same, but zig cc -O2 defines NDEBUG, which turns asserts off.) */
#include <stdio.h>
#include <stdlib.h>

static int checked_divide(int a, int b) {
    if (b == 0) {
        fprintf(stderr, "checked_divide: division of %d by zero\n", a);
        abort();
    }
    return a / b;
}

int main(void) {
    volatile int divisors[] = {2, 7, 0, 5};
    for (int k = 0; k < 4; k++) {
        printf("84 / %d = %d\n", divisors[k], checked_divide(84, divisors[k]));
        fflush(stdout); /* abort() does not flush stdio buffers */
    }
    puts("not reached");
    return 0;
}
