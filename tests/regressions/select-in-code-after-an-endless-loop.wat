;; Minimised from the fuzzer (wasm-smith, seed 4000, exec case 209): code after a loop that
;; only a branch out of an outer block leaves is valid but no path reaches it, so fusion
;; (machine/fuse.py) has no static stack there; a `select` in it crashed fusion with an
;; IndexError (`wasmformer trace`: "internal error"; the fuzzer's token machine: "crash").
(module
  (func (export "f") (result i32)
    (block $out
      (loop $again
        (br_if $out (i32.const 1))
        (br $again))
      (drop (select (i64.const 1) (i64.const 2) (i32.const 0))))
    (i32.const 7)))
