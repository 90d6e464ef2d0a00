/* Min-cost perfect matching of workers to jobs with the Hungarian algorithm
   (shortest augmenting paths with potentials, O(n^3)). The cost matrix comes
   from a fixed linear congruential generator, so every run is the same. */
#include <limits.h>
#include <stdio.h>

#define N 12

static int cost[N + 1][N + 1]; /* 1-based: row 0 and column 0 are unused */

static unsigned lcg_state = 2024;

static int next_cost(void) {
    lcg_state = lcg_state * 1103515245u + 12345u;
    return (int)((lcg_state >> 16) % 1000);
}

/* job_of[i] = the job given to worker i; returns the total cost. */
static int hungarian(int job_of[N + 1]) {
    int u[N + 1] = {0}, v[N + 1] = {0}; /* potentials of workers and jobs */
    int worker_of[N + 1] = {0};         /* worker_of[j] = worker holding job j */
    int way[N + 1];
    for (int i = 1; i <= N; i++) {
        /* Grow an alternating tree from worker i until it reaches a free job. */
        int min_to[N + 1], used[N + 1];
        for (int j = 0; j <= N; j++) min_to[j] = INT_MAX, used[j] = 0;
        int j0 = 0;
        worker_of[0] = i;
        do {
            used[j0] = 1;
            int i0 = worker_of[j0], delta = INT_MAX, j1 = 0;
            for (int j = 1; j <= N; j++) {
                if (used[j]) continue;
                int reduced = cost[i0][j] - u[i0] - v[j];
                if (reduced < min_to[j]) min_to[j] = reduced, way[j] = j0;
                if (min_to[j] < delta) delta = min_to[j], j1 = j;
            }
            for (int j = 0; j <= N; j++) {
                if (used[j]) u[worker_of[j]] += delta, v[j] -= delta;
                else min_to[j] -= delta;
            }
            j0 = j1;
        } while (worker_of[j0] != 0);
        /* Flip the path back to the root. */
        do {
            int j1 = way[j0];
            worker_of[j0] = worker_of[j1];
            j0 = j1;
        } while (j0 != 0);
    }
    for (int j = 1; j <= N; j++) job_of[worker_of[j]] = j;
    return -v[0];
}

int main(void) {
    for (int i = 1; i <= N; i++)
        for (int j = 1; j <= N; j++) cost[i][j] = next_cost();

    printf("%dx%d cost matrix, first row:", N, N);
    for (int j = 1; j <= N; j++) printf(" %d", cost[1][j]);
    putchar('\n');

    int job_of[N + 1];
    int total = hungarian(job_of);
    int check = 0;
    printf("assignment:\n");
    for (int i = 1; i <= N; i++) {
        printf("  worker %2d -> job %2d (cost %3d)\n", i, job_of[i], cost[i][job_of[i]]);
        check += cost[i][job_of[i]];
    }
    printf("minimum total cost: %d (sum of chosen entries: %d)\n", total, check);
    return 0;
}
