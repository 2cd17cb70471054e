//! libfsalstrata.so: the FSAL NFS-Ganesha 4.3 loads to serve Strata.
