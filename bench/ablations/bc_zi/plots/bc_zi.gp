set terminal pngcairo noenhanced size 1200,700
set output "bc_zi_val.png"
set title "AdamW: bias correction x zero init (thesis notes, Table 4.2), tiny GPT: validation loss"
set xlabel "step"
set ylabel "val loss"
set grid
set key outside right
plot "data/v00_val.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "AdamW (BC, ZI) default (lr x1)", \
     "data/v01_val.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "AdamW no BC, ZI (lr x1)", \
     "data/v02_val.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "AdamW BC, no ZI (lr x1)", \
     "data/v03_val.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 1 title "AdamW no BC, no ZI (lr x1)"
set terminal pngcairo noenhanced size 1200,700
set output "bc_zi_train.png"
set title "AdamW: bias correction x zero init (thesis notes, Table 4.2), tiny GPT: training loss (EMA 0.9)"
set xlabel "step"
set ylabel "train loss"
set grid
set key outside right
plot "data/v00_train.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "AdamW (BC, ZI) default (lr x1)", \
     "data/v01_train.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "AdamW no BC, ZI (lr x1)", \
     "data/v02_train.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "AdamW BC, no ZI (lr x1)", \
     "data/v03_train.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 1 title "AdamW no BC, no ZI (lr x1)"
