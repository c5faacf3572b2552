; benchmark generated from python API
(set-info :status unknown)
(assert
 false)
(check-sat)
