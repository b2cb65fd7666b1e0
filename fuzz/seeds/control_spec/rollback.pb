
digits"seed