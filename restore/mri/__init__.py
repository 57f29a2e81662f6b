"""MRI: load NIfTI -> estimate Rician sigma -> t* -> 2.5D conditional reverse steps -> metrics -> write."""
