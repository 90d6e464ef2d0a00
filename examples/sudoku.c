/* A backtracking Sudoku solver on "AI Escargot", the puzzle Arto Inkala
   published in 2006 as the hardest he knew. The empty cells are filled in
   reading order; the digits still allowed in each row, column and box are
   kept as bit masks. The search runs to the end, so it also proves that the
   solution is unique. */
#include <stdio.h>

static const char *PUZZLE =
    "1....7.9."
    ".3..2...8"
    "..96..5.."
    "..53..9.."
    ".1..8...2"
    "6....4..."
    "3......1."
    ".4......7"
    "..7...3..";

static int grid[81], solution[81];
static unsigned row_used[9], col_used[9], box_used[9];

/* The empty cells, in reading order, with their row, column and box. */
static int empty_cell[81], empty_row[81], empty_col[81], empty_box[81];
static int empty_count, solutions;
static long guesses;

static int box_of(int cell) { return (cell / 27) * 3 + (cell % 9) / 3; }

static void toggle(int r, int c, int b, unsigned bit) {
    row_used[r] ^= bit;
    col_used[c] ^= bit;
    box_used[b] ^= bit;
}

/* Fill the k-th empty cell and all after it; counts the solutions found
   (stopping at two: one more than "unique" needs). */
static void search(int k) {
    if (k == empty_count) {
        if (solutions++ == 0)
            for (int cell = 0; cell < 81; cell++) solution[cell] = grid[cell];
        return;
    }
    int r = empty_row[k], c = empty_col[k], b = empty_box[k];
    unsigned free_digits = ~(row_used[r] | col_used[c] | box_used[b]) & 0x3FEu;
    while (free_digits && solutions < 2) {
        unsigned bit = free_digits & -free_digits; /* lowest allowed digit */
        free_digits ^= bit;
        guesses++;
        grid[empty_cell[k]] = __builtin_ctz(bit);
        toggle(r, c, b, bit);
        search(k + 1);
        toggle(r, c, b, bit);
    }
    grid[empty_cell[k]] = 0;
}

static void print_grid(const int *g) {
    for (int r = 0; r < 9; r++) {
        if (r % 3 == 0) puts("+-------+-------+-------+");
        for (int c = 0; c < 9; c++) {
            if (c % 3 == 0) printf("| ");
            int d = g[r * 9 + c];
            putchar(d ? '0' + d : '.');
            putchar(' ');
        }
        puts("|");
    }
    puts("+-------+-------+-------+");
}

int main(void) {
    for (int cell = 0; cell < 81; cell++) {
        int r = cell / 9, c = cell % 9, b = box_of(cell);
        if (PUZZLE[cell] == '.') {
            empty_cell[empty_count] = cell;
            empty_row[empty_count] = r;
            empty_col[empty_count] = c;
            empty_box[empty_count] = b;
            empty_count++;
        } else {
            grid[cell] = PUZZLE[cell] - '0';
            toggle(r, c, b, 1u << grid[cell]);
        }
    }
    print_grid(grid);
    search(0);
    if (solutions == 0) {
        puts("no solution");
        return 1;
    }
    printf("%s solution, %ld guesses:\n", solutions == 1 ? "unique" : "not a unique", guesses);
    print_grid(solution);
    return 0;
}
