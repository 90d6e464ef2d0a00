;; Found by: python scripts/fuzz.py --seed 1 --generator exec --case 46 and 83.
;; wasmtime 50's fuel after instantiation is not the start function's count: it
;; charges 2 more for entering the start function and also charges for some
;; constant expressions (here the element segment). The fuzzer compares the
;; start function run as an exported call instead; wasmformer counts 3 at load.
(module
  (global (export "g") (mut i32) (i32.const 0))
  (func $start
    i32.const 5
    global.set 0)
  (start $start)
  (elem funcref)
  (func (export "get") (result i32)
    global.get 0))
