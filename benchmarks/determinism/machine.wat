;; For the determinism check (`wasmformer bench --determinism`): what C at -mcpu=mvp does not
;; emit: multi-value blocks and returns, mutable globals, select, explicit br_table, the
;; sign-extension ops, call_indirect through a table with a null slot and a mismatched type
;; (both trap), and nested blocks with values.
(module
  (type $bin (func (param i64 i64) (result i64)))
  (type $un (func (param i64) (result i64)))
  (memory (export "memory") 1 4)
  (global $acc (mut i64) (i64.const 0))
  (global $calls (mut i32) (i32.const 0))
  (table 8 funcref)
  (elem (i32.const 0) $add $sub $mul $neg $rotr $xor)  ;; slot 3 has the wrong type; 6, 7 null

  (func $add (type $bin) (i64.add (local.get 0) (local.get 1)))
  (func $sub (type $bin) (i64.sub (local.get 0) (local.get 1)))
  (func $mul (type $bin) (i64.mul (local.get 0) (local.get 1)))
  (func $neg (type $un) (i64.sub (i64.const 0) (local.get 0)))
  (func $rotr (type $bin) (i64.rotr (local.get 0) (local.get 1)))
  (func $xor (type $bin) (i64.xor (local.get 0) (local.get 1)))

  ;; (quotient, remainder) as two results
  (func $divmod (param $a i32) (param $b i32) (result i32 i32)
    (i32.div_u (local.get $a) (local.get $b))
    (i32.rem_u (local.get $a) (local.get $b)))

  ;; a = a * 6364136223846793005 + b, kept in a global
  (func $step (param $b i64) (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (global.set $acc (i64.add (i64.mul (global.get $acc) (i64.const 6364136223846793005))
                              (local.get $b)))
    (global.get $acc))

  ;; n rounds of: pick a case by br_table, call through the table, fold into the global
  (func (export "dispatch") (param $n i32) (param $x i64) (result i64) (local $i i32) (local $k i32) (local $r i32)
    (block $done
      (loop $round
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $k (i32.wrap_i64 (i64.rem_u (call $step (local.get $x)) (i64.const 5))))
        (block $d (block $c (block $b (block $a
          (br_table $a $b $c $d $a (local.get $k)))
          ;; $a: an indirect binop from slots 0, 1, 2, 4, 5
          (local.set $x (call_indirect (type $bin) (local.get $x) (global.get $acc)
            (select (i32.const 4) (local.get $k) (i32.eq (local.get $k) (i32.const 3)))))
          (br $d))
          ;; $b: sign extensions
          (local.set $x (i64.add (i64.extend8_s (local.get $x))
                                 (i64.extend32_s (i64.shl (local.get $x) (i64.const 3)))))
          (local.set $x (i64.add (local.get $x)
                                 (i64.extend_i32_s (i32.extend16_s (i32.wrap_i64 (global.get $acc))))))
          (br $d))
          ;; $c: multi-value divmod, its results stored as i16 and i8 and loaded back
          (i32.and (i32.wrap_i64 (local.get $x)) (i32.const 0xffff))
          (i32.or (i32.and (i32.wrap_i64 (global.get $acc)) (i32.const 0xff)) (i32.const 1))
          (call $divmod)
          (local.set $r)
          (i32.store16 offset=0 (i32.const 100))  ;; the quotient
          (i32.store8 offset=2 (i32.const 100) (local.get $r))
          (i32.store8 offset=3 (i32.const 100) (i32.shr_u (local.get $r) (i32.const 8)))
          (local.set $x (i64.add (local.get $x) (i64.load32_u offset=0 (i32.const 100))))
          (local.set $x (i64.add (local.get $x) (i64.load16_s offset=2 (i32.const 100)))))
        ;; $d
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $round)))
    (local.get $x))

  ;; call_indirect of slot $s: slot 3 traps (indirect call type mismatch), 6 and 7 are null
  ;; (uninitialized element), 8 and above are out of the table (undefined element)
  (func (export "indirect") (param $s i32) (param $a i64) (param $b i64) (result i64)
    (call_indirect (type $bin) (local.get $a) (local.get $b) (local.get $s)))

  ;; a block with two values out; returns four values
  (func (export "triple") (param $a i32) (param $b i32) (result i32 i32 i64 i32)
    (block (result i32 i32)
      (local.get $a) (local.get $b)
      (br_if 0 (i32.lt_s (local.get $a) (local.get $b)))
      (drop) (drop) (local.get $b) (local.get $a))
    (i64.extend_i32_u (global.get $calls))
    (i32.const 7))

  ;; memory.grow by $d pages (the memory's own maximum is 4) and memory.size
  (func (export "grow") (param $d i32) (result i32 i32)
    (memory.grow (local.get $d)) (memory.size))

  ;; i64 load/store of every width at an address (traps out of bounds)
  (func (export "poke") (param $at i32) (param $v i64) (result i64)
    (i64.store (local.get $at) (local.get $v))
    (i64.store32 offset=1 (local.get $at) (i64.rotl (local.get $v) (i64.const 17)))
    (i64.store16 offset=3 (local.get $at) (i64.const -2))
    (i64.store8 offset=5 (local.get $at) (local.get $v))
    (i64.add (i64.load8_s offset=1 (local.get $at))
      (i64.add (i64.load8_u offset=6 (local.get $at))
        (i64.add (i64.load16_u offset=2 (local.get $at))
          (i64.add (i64.load32_s offset=4 (local.get $at)) (i64.load (local.get $at)))))))
)
