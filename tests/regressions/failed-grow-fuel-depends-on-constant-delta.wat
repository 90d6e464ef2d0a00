;; Found by: python scripts/fuzz.py --seed 2 --generator exec --case 42 (minimised by hand).
;; wasmtime 50 charges a failed memory.grow/table.grow its delta in fuel only when
;; cranelift sees the delta as a constant: "grow_const" is charged 7, "grow" with
;; argument 7 is charged 0. wasmformer charges every failed delta <= 128, so its
;; count for "grow" exceeds wasmtime's fuel by the delta: an explained mismatch.
(module
  (memory 1 2)
  (table 1 2 funcref)
  (func (export "grow") (param i32) (result i32)
    local.get 0
    memory.grow)
  (func (export "grow_const") (result i32)
    i32.const 7
    memory.grow)
  (func (export "table_grow") (param i32) (result i32)
    ref.null func
    local.get 0
    table.grow 0))
