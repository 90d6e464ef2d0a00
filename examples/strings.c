/* The <string.h> and formatting functions most C programs lean on. */
#include <stdio.h>
#include <string.h>

int main(void) {
    char buf[64], other[64];
    const char *text = "the quick brown fox jumps over the lazy dog";

    printf("strlen(\"%s\") = %zu\n", text, strlen(text));
    printf("strchr 'q' -> \"%s\"; strrchr 'o' -> \"%s\"\n", strchr(text, 'q'), strrchr(text, 'o'));
    printf("strstr \"lazy\" at offset %d\n", (int)(strstr(text, "lazy") - text));

    strcpy(buf, "hello");
    strcat(buf, ", ");
    strncat(buf, "worldwide", 5);
    printf("strcpy/strcat/strncat: \"%s\"\n", buf);

    printf("strcmp: %d %d %d; strncmp(\"apple\", \"apply\", 4) = %d\n", strcmp("abc", "abd") < 0,
           strcmp("abc", "abc") == 0, strcmp("b", "a") > 0, strncmp("apple", "apply", 4));

    memset(other, '*', 10);
    other[10] = '\0';
    memcpy(other + 2, "MID", 3);
    memmove(other + 1, other, 6); /* overlapping */
    printf("memset/memcpy/memmove: \"%s\"; memcmp = %d\n", other, memcmp(other, "**MID", 5) != 0);

    int n = snprintf(buf, sizeof buf, "%5d|%-5d|%05d|%x|%X|%o|%c|%%", 42, 42, 42, 255, 255, 8, 'Z');
    printf("snprintf wrote %d chars: %s\n", n, buf);
    n = snprintf(buf, 8, "%s", "truncated output");
    printf("snprintf into 8 bytes: returned %d, kept \"%s\"\n", n, buf);
    sprintf(buf, "%lld/%llu/%llx", -9000000000ll, 18000000000000000000ull, 0xABCDEF0123ull);
    printf("sprintf 64-bit: %s\n", buf);
    printf("precision and width: [%.3s] [%8s] [%-8s] [%+d]\n", "abcdef", "right", "left", 5);
    puts("puts adds a newline");
    return 0;
}
