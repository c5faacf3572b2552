; benchmark generated from python API
(set-info :status unknown)
(declare-fun D_last_x () Int)
(declare-fun P_last_x () Int)
(declare-fun D_last_y () Int)
(declare-fun P_last_y () Int)
(declare-fun D_dst_x () Int)
(declare-fun P_dst_x () Int)
(declare-fun D_dst_y () Int)
(declare-fun P_dst_y () Int)
(assert
 (= D_last_x 1))
(assert
 (= P_last_x 0))
(assert
 (= D_last_y 0))
(assert
 (= P_last_y 0))
(assert
 (= D_dst_x 1))
(assert
 (= P_dst_x 0))
(assert
 (= D_dst_y 0))
(assert
 (= P_dst_y 0))
(assert
 (let (($t0 (and (and (= D_dst_x D_last_x) (= P_dst_x P_last_x)) (and (= D_dst_y D_last_y) (= P_dst_y P_last_y)))))
(not $t0)))
(check-sat)
