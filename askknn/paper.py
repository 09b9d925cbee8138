"""The ASK paper's published numbers (CIFAR-10, VGG16-BN trained with AT at eps 4, attacks at eps 8,
K = 5), shown beside this project's results as a reference. Accuracies in percent."""

LAYER_SETS = ("conv3", "conv4", "conv3+conv4")

# Table 1: DkNN accuracy under attack.
TABLE1 = {
    "cosine": {"ask": (35.1, 36.7, 41.0), "advknn": (58.9, 50.5, 54.1), "dknn_atk": (60.7, 50.8, 54.85)},
    "l2": {"ask": (32.21, 34.46, 39.26), "advknn": (56.55, 53.9, 57.15), "dknn_atk": (54.45, 49.15, 54.65)},
}
# Table 3: DkNN accuracy under ASK-Atk (cosine) of each training method.
TABLE3 = {"askdef": (42.7, 43.6, 45.9), "at": (35.1, 36.7, 41.0), "atsnn": (38.3, 41.7, 41.9)}
# Table 5: DNN accuracy under PGD at eps 0, 4, 6, 8.
TABLE5 = {"askdef": (86.6, 65.94, 52.72, 40.36), "at": (84.46, 58.34, 43.53, 31.65),
          "atsnn": (86.1, 59.2, 43.9, 30.9)}
# Table 6: targeted ASK-Atk (l2).
TABLE6_TARGETED = (32.4, 35.9, 39.9)
# Table 8: rows = DkNN layers, columns = attacked layers.
TABLE8 = {"conv3": (35.1, 49.0, 38.6), "conv4": (55.2, 36.7, 37.1), "conv3+conv4": (48.2, 41.9, 41.0)}
# Table 9: rows K+ (3, 5, 7), columns K- (1, 3, 5, 7, 9), conv4.
TABLE9 = {3: (40.8, 36.0, 36.1, 36.3, 36.4), 5: (42.3, 36.9, 36.7, 35.9, 35.9), 7: (42.8, 38.0, 36.6, 36.3, 36.0)}
SPEEDUP = 20  # ASK-Atk is "around 20 times faster" than DkNN-Atk and AdvKnn
