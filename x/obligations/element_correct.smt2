; benchmark generated from python API
(set-info :status unknown)
(declare-fun c_x () Int)
(declare-fun c_y () Int)
(declare-fun i_0 () Int)
(declare-fun i_1 () Int)
(assert
 (let (($t0 (>= c_x 0)))
 (and $t0 (< c_x 2))))
(assert
 (let (($t1 (>= c_y 0)))
 (and $t1 (< c_y 2))))
(assert
 (let (($t2 (>= i_0 0)))
 (and $t2 (< i_0 4))))
(assert
 (let (($t3 (>= i_1 0)))
 (and $t3 (< i_1 4))))
(assert
 (let ((?t4 (+ (* (+ 0 c_y) 4) i_0)))
 (< ?t4 8)))
(assert
 (let ((?t5 (+ (* (+ 0 c_x) 4) i_1)))
 (< ?t5 8)))
(assert
 (let ((?t5 (+ (* (+ 0 c_x) 4) i_1)))
(let ((?t4 (+ (* (+ 0 c_y) 4) i_0)))
(let (($t3 (>= i_1 0)))
(let (($t6 (and $t3 (< i_1 4))))
(let (($t2 (>= i_0 0)))
(let (($t7 (and $t2 (< i_0 4))))
(let (($t8 (and (and $t7 $t6) (= ?t4 (+ (* (+ 0 (mod (+ 0 c_y) 2)) 4) i_0)) (= ?t5 (+ (* (+ 0 (mod (+ 0 c_x) 2)) 4) i_1)))))
(not $t8)))))))))
(check-sat)
