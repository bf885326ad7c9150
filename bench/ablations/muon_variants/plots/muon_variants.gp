set terminal pngcairo noenhanced size 1200,700
set output "muon_variants_val.png"
set title "Muon variants as steepest descent (talk's 18-variant table), tiny GPT: validation loss"
set xlabel "step"
set ylabel "val loss"
set grid
set key outside right
plot "data/v00_val.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "(Regularized, max, sign) (lr x1)", \
     "data/v01_val.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "(Constrained, max, sign) Scion (lr x1)", \
     "data/v02_val.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "(Regularized, l2, sign) (lr x0.3)", \
     "data/v03_val.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 1 title "(Constrained, l2, sign) (lr x0.3)", \
     "data/v04_val.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 1 title "(Regularized, hybrid, sign) (lr x0.3)", \
     "data/v05_val.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 1 title "(Constrained, hybrid, sign) (lr x0.3)", \
     "data/v06_val.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 1 title "(Regularized, max, ada_inf) (lr x3)", \
     "data/v07_val.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 1 title "(Constrained, max, ada_inf) Muon (lr x1)", \
     "data/v08_val.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 2 title "(Regularized, l2, ada_inf) (lr x0.3)", \
     "data/v09_val.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 2 title "(Constrained, l2, ada_inf) (lr x0.3)", \
     "data/v10_val.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 2 title "(Regularized, hybrid, ada_inf) (lr x0.3)", \
     "data/v11_val.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 2 title "(Constrained, hybrid, ada_inf) (lr x0.3)", \
     "data/v12_val.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 2 title "(Regularized, max, ada_2) (lr x3)", \
     "data/v13_val.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 2 title "(Constrained, max, ada_2) (lr x3)", \
     "data/v14_val.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 2 title "(Regularized, l2, ada_2) PolarGrad (lr x1)", \
     "data/v15_val.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 2 title "(Constrained, l2, ada_2) (lr x0.3)", \
     "data/v16_val.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 3 title "(Regularized, hybrid, ada_2) MuonMax (lr x1)", \
     "data/v17_val.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 3 title "(Constrained, hybrid, ada_2) (lr x1)"
set terminal pngcairo noenhanced size 1200,700
set output "muon_variants_train.png"
set title "Muon variants as steepest descent (talk's 18-variant table), tiny GPT: training loss (EMA 0.9)"
set xlabel "step"
set ylabel "train loss"
set grid
set key outside right
plot "data/v00_train.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "(Regularized, max, sign) (lr x1)", \
     "data/v01_train.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "(Constrained, max, sign) Scion (lr x1)", \
     "data/v02_train.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "(Regularized, l2, sign) (lr x0.3)", \
     "data/v03_train.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 1 title "(Constrained, l2, sign) (lr x0.3)", \
     "data/v04_train.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 1 title "(Regularized, hybrid, sign) (lr x0.3)", \
     "data/v05_train.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 1 title "(Constrained, hybrid, sign) (lr x0.3)", \
     "data/v06_train.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 1 title "(Regularized, max, ada_inf) (lr x3)", \
     "data/v07_train.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 1 title "(Constrained, max, ada_inf) Muon (lr x1)", \
     "data/v08_train.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 2 title "(Regularized, l2, ada_inf) (lr x0.3)", \
     "data/v09_train.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 2 title "(Constrained, l2, ada_inf) (lr x0.3)", \
     "data/v10_train.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 2 title "(Regularized, hybrid, ada_inf) (lr x0.3)", \
     "data/v11_train.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 2 title "(Constrained, hybrid, ada_inf) (lr x0.3)", \
     "data/v12_train.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 2 title "(Regularized, max, ada_2) (lr x3)", \
     "data/v13_train.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 2 title "(Constrained, max, ada_2) (lr x3)", \
     "data/v14_train.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 2 title "(Regularized, l2, ada_2) PolarGrad (lr x1)", \
     "data/v15_train.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 2 title "(Constrained, l2, ada_2) (lr x0.3)", \
     "data/v16_train.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 3 title "(Regularized, hybrid, ada_2) MuonMax (lr x1)", \
     "data/v17_train.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 3 title "(Constrained, hybrid, ada_2) (lr x1)"
set terminal pngcairo noenhanced size 1200,700
set output "muon_variants_lr.png"
set title "Muon variants as steepest descent (talk's 18-variant table), tiny GPT: lr sensitivity"
set xlabel "lr multiplier"
set ylabel "final val loss"
set grid
set key outside right
set logscale x
plot "data/v00_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "(Regularized, max, sign)", \
     "data/v01_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "(Constrained, max, sign) Scion", \
     "data/v02_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "(Regularized, l2, sign)", \
     "data/v03_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 1 title "(Constrained, l2, sign)", \
     "data/v04_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 1 title "(Regularized, hybrid, sign)", \
     "data/v05_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 1 title "(Constrained, hybrid, sign)", \
     "data/v06_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 1 title "(Regularized, max, ada_inf)", \
     "data/v07_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 1 title "(Constrained, max, ada_inf) Muon", \
     "data/v08_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 2 title "(Regularized, l2, ada_inf)", \
     "data/v09_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 2 title "(Constrained, l2, ada_inf)", \
     "data/v10_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 2 title "(Regularized, hybrid, ada_inf)", \
     "data/v11_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 2 title "(Constrained, hybrid, ada_inf)", \
     "data/v12_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 2 title "(Regularized, max, ada_2)", \
     "data/v13_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 2 title "(Constrained, max, ada_2)", \
     "data/v14_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 2 title "(Regularized, l2, ada_2) PolarGrad", \
     "data/v15_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 2 title "(Constrained, l2, ada_2)", \
     "data/v16_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 3 title "(Regularized, hybrid, ada_2) MuonMax", \
     "data/v17_lr.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 3 title "(Constrained, hybrid, ada_2)"
