/* Add and subtract decimal numbers far too large for any machine integer,
   kept as strings of digits, the way it is done on paper. */
#include <stdio.h>
#include <string.h>

#define MAX_DIGITS 128

/* out = a + b; returns out. Digits are added from the right with a carry. */
static char *add(const char *a, const char *b, char *out) {
    int i = (int)strlen(a) - 1, j = (int)strlen(b) - 1;
    char tmp[MAX_DIGITS + 2];
    int n = 0, carry = 0;
    while (i >= 0 || j >= 0 || carry) {
        int sum = carry;
        if (i >= 0) sum += a[i--] - '0';
        if (j >= 0) sum += b[j--] - '0';
        tmp[n++] = (char)('0' + sum % 10);
        carry = sum / 10;
    }
    for (int k = 0; k < n; k++) out[k] = tmp[n - 1 - k];
    out[n] = '\0';
    return out;
}

/* out = a - b for a >= b; leading zeros are stripped. */
static char *sub(const char *a, const char *b, char *out) {
    int i = (int)strlen(a) - 1, j = (int)strlen(b) - 1;
    char tmp[MAX_DIGITS + 2];
    int n = 0, borrow = 0;
    while (i >= 0) {
        int d = (a[i--] - '0') - borrow - (j >= 0 ? b[j--] - '0' : 0);
        borrow = d < 0;
        tmp[n++] = (char)('0' + (d < 0 ? d + 10 : d));
    }
    while (n > 1 && tmp[n - 1] == '0') n--;
    for (int k = 0; k < n; k++) out[k] = tmp[n - 1 - k];
    out[n] = '\0';
    return out;
}

int main(void) {
    const char *a = "3141592653589793238462643383279502884197169399375105";
    const char *b = "2718281828459045235360287471352662497757247093699959";
    const char *nines = "99999999999999999999999999999999999999999999";
    char sum[MAX_DIGITS + 2], diff[MAX_DIGITS + 2], back[MAX_DIGITS + 2];

    printf("  %s\n+ %s\n= %s\n", a, b, add(a, b, sum));
    printf("%s + 1 = %s\n", nines, add(nines, "1", sum));
    printf("%s - %s = %s\n", a, b, sub(a, b, diff));
    add(diff, b, back);
    printf("check: (a - b) + b %s a\n", strcmp(back, a) == 0 ? "==" : "!=");

    /* Fibonacci numbers past 64 bits: F(100) has 21 digits. Three buffers
       take turns, so nothing is copied. */
    char fib[3][MAX_DIGITS + 2] = {"0", "1"};
    for (int k = 2; k <= 100; k++) add(fib[(k - 2) % 3], fib[(k - 1) % 3], fib[k % 3]);
    printf("F(100) = %s (%d digits)\n", fib[100 % 3], (int)strlen(fib[100 % 3]));
    return 0;
}
