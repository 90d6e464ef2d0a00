/* A little stack-machine interpreter. Arithmetic opcodes are dispatched
   through a table of function pointers; control flow goes through a switch.
   Its program computes 10!, gcd(1071, 462) and the sum 1..100. */
#include <stdio.h>

enum {
    OP_ADD, OP_SUB, OP_MUL, OP_MOD, OP_LT, /* binary: through the table */
    OP_PUSH, OP_LOAD, OP_STORE, OP_JMP, OP_JZ, OP_PRINT, OP_HALT
};

typedef int (*binary_fn)(int, int);

static int op_add(int a, int b) { return a + b; }
static int op_sub(int a, int b) { return a - b; }
static int op_mul(int a, int b) { return a * b; }
static int op_mod(int a, int b) { return a % b; }
static int op_lt(int a, int b) { return a < b; }

static const binary_fn BINARY[] = {op_add, op_sub, op_mul, op_mod, op_lt};
static const char *const NAMES[] = {"fact(10)", "gcd(1071, 462)", "sum(1..100)"};

/* The interpreter's program, assembled by the helpers below. */
static int code[256], here;

enum { VAR_N, VAR_ACC, VAR_A, VAR_B, VAR_I };

static void emit(int op) { code[here++] = op; }
static void emit_arg(int op, int arg) { emit(op); emit(arg); }

/* Emits a jump whose target is not known yet; returns the slot to patch. */
static int emit_forward_jump(int op) {
    emit_arg(op, -1);
    return here - 1;
}

static void patch_to_here(int slot) { code[slot] = here; }

static void assemble(void) {
    /* acc = 1; n = 10; while (0 < n) { acc = acc * n; n = n - 1; } print acc */
    emit_arg(OP_PUSH, 1), emit_arg(OP_STORE, VAR_ACC);
    emit_arg(OP_PUSH, 10), emit_arg(OP_STORE, VAR_N);
    int top = here;
    emit_arg(OP_PUSH, 0), emit_arg(OP_LOAD, VAR_N), emit(OP_LT);
    int done = emit_forward_jump(OP_JZ);
    emit_arg(OP_LOAD, VAR_ACC), emit_arg(OP_LOAD, VAR_N), emit(OP_MUL), emit_arg(OP_STORE, VAR_ACC);
    emit_arg(OP_LOAD, VAR_N), emit_arg(OP_PUSH, 1), emit(OP_SUB), emit_arg(OP_STORE, VAR_N);
    emit_arg(OP_JMP, top);
    patch_to_here(done);
    emit_arg(OP_LOAD, VAR_ACC), emit_arg(OP_PRINT, 0);

    /* a = 1071; b = 462; while (0 < b) { t = a % b; a = b; b = t; } print a */
    emit_arg(OP_PUSH, 1071), emit_arg(OP_STORE, VAR_A);
    emit_arg(OP_PUSH, 462), emit_arg(OP_STORE, VAR_B);
    top = here;
    emit_arg(OP_PUSH, 0), emit_arg(OP_LOAD, VAR_B), emit(OP_LT);
    done = emit_forward_jump(OP_JZ);
    emit_arg(OP_LOAD, VAR_A), emit_arg(OP_LOAD, VAR_B), emit(OP_MOD); /* t stays on the stack */
    emit_arg(OP_LOAD, VAR_B), emit_arg(OP_STORE, VAR_A), emit_arg(OP_STORE, VAR_B);
    emit_arg(OP_JMP, top);
    patch_to_here(done);
    emit_arg(OP_LOAD, VAR_A), emit_arg(OP_PRINT, 1);

    /* acc = 0; i = 1; while (i < 101) { acc = acc + i; i = i + 1; } print acc */
    emit_arg(OP_PUSH, 0), emit_arg(OP_STORE, VAR_ACC);
    emit_arg(OP_PUSH, 1), emit_arg(OP_STORE, VAR_I);
    top = here;
    emit_arg(OP_LOAD, VAR_I), emit_arg(OP_PUSH, 101), emit(OP_LT);
    done = emit_forward_jump(OP_JZ);
    emit_arg(OP_LOAD, VAR_ACC), emit_arg(OP_LOAD, VAR_I), emit(OP_ADD), emit_arg(OP_STORE, VAR_ACC);
    emit_arg(OP_LOAD, VAR_I), emit_arg(OP_PUSH, 1), emit(OP_ADD), emit_arg(OP_STORE, VAR_I);
    emit_arg(OP_JMP, top);
    patch_to_here(done);
    emit_arg(OP_LOAD, VAR_ACC), emit_arg(OP_PRINT, 2);
    emit(OP_HALT);
}

static int run(const int *code) {
    int stack[32], sp = 0, vars[8] = {0}, pc = 0, steps = 0;
    for (;;) {
        int op = code[pc++];
        steps++;
        if (op <= OP_LT) {
            int b = stack[--sp], a = stack[--sp];
            stack[sp++] = BINARY[op](a, b);
            continue;
        }
        switch (op) {
        case OP_PUSH: stack[sp++] = code[pc++]; break;
        case OP_LOAD: stack[sp++] = vars[code[pc++]]; break;
        case OP_STORE: vars[code[pc++]] = stack[--sp]; break;
        case OP_JMP: pc = code[pc]; break;
        case OP_JZ: pc = stack[--sp] ? pc + 1 : code[pc]; break;
        case OP_PRINT: printf("%s = %d\n", NAMES[code[pc++]], stack[--sp]); break;
        case OP_HALT: return steps;
        default: printf("bad opcode %d at %d\n", op, pc - 1); return -1;
        }
    }
}

int main(void) {
    assemble();
    printf("program: %d words\n", here);
    int steps = run(code);
    printf("%d bytecode instructions executed\n", steps);
    return steps < 0;
}
