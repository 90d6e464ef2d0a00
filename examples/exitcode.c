/* A program that reports failure through its exit code. */
#include <stdio.h>

int main(void) {
    puts("checking the input...");
    puts("error: nothing to do");
    return 3;
}
