; benchmark generated from python API
(set-info :status unknown)
(declare-fun D_0_x () Int)
(declare-fun P_0_x () Int)
(declare-fun D_0_y () Int)
(declare-fun P_0_y () Int)
(declare-fun D_1_x () Int)
(declare-fun P_1_x () Int)
(declare-fun D_1_y () Int)
(declare-fun P_1_y () Int)
(assert
 (= D_0_x 0))
(assert
 (= P_0_x 0))
(assert
 (= D_0_y 1))
(assert
 (= P_0_y 0))
(assert
 (= D_1_x 1))
(assert
 (= P_1_x 0))
(assert
 (= D_1_y 0))
(assert
 (= P_1_y 0))
(assert
 (let ((?t0 (div 64 2)))
(let (($t1 (>= D_1_x 0)))
(let ((?t2 (ite $t1 ?t0 64)))
(let (($t3 (>= D_1_y 0)))
(let (($t4 (>= D_0_x 0)))
(let ((?t5 (ite $t4 ?t0 64)))
(let (($t6 (>= D_0_y 0)))
(let (($t7 (and (<= (* (ite $t6 (div ?t5 2) ?t5) 4) 64) (<= (* (ite $t3 (div ?t2 2) ?t2) 4) 64))))
(not $t7))))))))))
(check-sat)
