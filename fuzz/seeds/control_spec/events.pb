digits
 d*deploy