/* Dynamic memory: a linked list built with malloc and freed again, a
   growing array with realloc, and a large block that makes the heap grow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    int value;
    struct node *next;
};

static struct node *push(struct node *head, int value) {
    struct node *n = malloc(sizeof *n);
    if (!n) return NULL;
    n->value = value;
    n->next = head;
    return n;
}

static struct node *reverse(struct node *head) {
    struct node *prev = NULL;
    while (head) {
        struct node *next = head->next;
        head->next = prev;
        prev = head;
        head = next;
    }
    return prev;
}

int main(void) {
    struct node *list = NULL;
    for (int k = 1; k <= 20; k++) list = push(list, k * k);
    list = reverse(list);
    printf("list:");
    int length = 0;
    for (struct node *n = list; n; n = n->next, length++)
        if (length < 8) printf(" %d", n->value);
    printf(" ... (%d nodes)\n", length);
    while (list) {
        struct node *next = list->next;
        free(list);
        list = next;
    }

    int capacity = 4, size = 0;
    int *array = malloc((size_t)capacity * sizeof *array);
    for (int k = 0; k < 200; k++) {
        if (size == capacity) {
            capacity *= 2;
            array = realloc(array, (size_t)capacity * sizeof *array);
            printf("grew to %d\n", capacity);
        }
        array[size++] = 3 * k + 1;
    }
    long sum = 0;
    for (int k = 0; k < size; k++) sum += array[k];
    printf("array of %d, sum %ld, last %d\n", size, sum, array[size - 1]);
    free(array);

    /* 1 MiB: more than the initial memory, so malloc must call memory.grow. */
    size_t big_size = 1u << 20;
    unsigned char *big = malloc(big_size);
    if (!big) {
        puts("out of memory");
        return 1;
    }
    big[0] = 1;
    big[big_size - 1] = 2;
    printf("big block: first %d, last %d\n", big[0], big[big_size - 1]);
    free(big);

    char *copy = strdup("strdup uses malloc too");
    puts(copy);
    free(copy);
    void *zeros = calloc(16, sizeof(int));
    printf("calloc gives zeros: %d\n", ((int *)zeros)[15]);
    free(zeros);
    return 0;
}
