"""Which words people use for which emoji, per language: the training corpus's vocabulary.

Training-time only: the app never imports this module. The sources, best first:

* EVERYDAY: everyday English words written by hand for the emoji people use most
  ("fries" -> 🍟, "xmas" -> 🎄, "lol" -> 😂), which no database lists, and the same
  for the other languages (``everyday_words``: "mdr", "с днём рождения", "ㅋㅋㅋ");
* CLDR annotations (Debian ``unicode-cldr-core``): a short name and keywords for
  every emoji in ~147 locales ("Pizza | Pizzastück | Pizzeria");
* the ``emoji`` package's names and aliases, and gemoji's aliases and tags (``emojis``);
* WordNet 3.0 (Debian ``wordnet-base``): synonyms of one-word English names
  ("automobile" for 🚗) and irregular plurals ("mice", "geese");
* ``wordfreq``: how often people use each word, which sets how often it is trained.

Each word stands for one emoji: the first source to claim it keeps it, so no two
rows of the corpus contradict each other. Keywords that CLDR gives to many emoji
("face", "animal") name none of them.

Install the data once: apt-get install unicode-cldr-core wordnet-base fortunes;
pip install wordfreq emoji emojis.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import emoji
from emojis.db.db import EMOJI_DB

from emojilm.everyday_words import everyday_words

CLDR_DIR = Path("/usr/share/unicode/cldr/common")
WORDNET_DIR = Path("/usr/share/wordnet")
VS16 = "\ufe0f"

# Languages the corpus covers besides English (CLDR annotations and wordfreq lists for each).
OTHER_LANGUAGES = ("fr", "de", "es", "it", "pt", "nl", "ru", "ja", "zh", "ko", "pl", "sv", "tr")

# Gemoji categories the model spends its capacity on; Symbols only for the few people use.
CATEGORIES = {"Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
              "Travel & Places", "Activities", "Objects"}  # fmt: skip
SYMBOLS_KEPT = set(
    [
        "💯",
        "✅",
        "❌",
        "⚠️",
        "♻️",
        "☮️",
        "💤",
        "💢",
        "💥",
        "💫",
        "💦",
        "💨",
        "🔞",
        "⛔",
        "🚫",
        "❓",
        "❗",
        "‼️",
        "⁉️",
        "🆗",
        "🆒",
        "🆕",
        "🆘",
        "✔️",
        "➕",
        "🎵",
        "🎶",
        "💲",
        "🔥",
        "✨",
        "⭐",
        "🌟",
        "⚡",
    ]
)
# Well-known countries; the other ~200 flags would cost capacity few visitors use.
# fmt: off
COUNTRY_CODES = [
    "US", "GB", "CA", "AU", "NZ", "IE", "FR", "DE", "ES", "IT", "PT", "NL", "BE", "CH", "AT", "SE", "NO", "DK",
    "FI", "IS", "PL", "CZ", "GR", "TR", "RU", "UA", "JP", "CN", "KR", "IN", "ID", "TH", "VN", "PH", "SG", "MY",
    "BR", "AR", "MX", "CL", "CO", "PE", "CU", "JM", "ZA", "EG", "NG", "KE", "MA", "IL", "SA", "AE",
]
# fmt: on

# A CLDR keyword shared by more emoji than this names none of them...
MAX_KEYWORD_SHARE = 2
# ...unless it names a small family ("кот": the cat and its ten faces): then, in the
# languages without hand-written everyday words, it goes to the family's first
# everyday emoji, after every other source has had its say.
MAX_FAMILY_SHARE = 12

# Everyday English words for the emoji people use most, written by hand: chat words,
# plain names, plurals and verb forms that the databases lack. First word first.
EVERYDAY: dict[str, str] = {
    # faces and feelings
    "😂": "lol | lmao | haha | hahaha | laughing | crying laughing | so funny | hilarious | funny | joke",
    "🤣": "rofl | dying of laughter | cracking up",
    "😊": "happy | glad | smile | smiling | pleased | cheerful | joyful | blush",
    "😀": "grin | grinning | big smile",
    "😁": "beaming | cheesy grin",
    "😆": "laugh | laughs | giggle | giggling",
    "😅": "phew | awkward | nervous laugh | sweating",
    "😉": "wink | winking | just kidding | jk",
    "😍": "in love | crush | gorgeous | adorable | beautiful",
    "🥰": "loved | love you | lovely | cute | sweetheart | affection",
    "😘": "kiss | kisses | xoxo | mwah | kissing",
    "😋": "yummy | yum | delicious | tasty",
    "😜": "silly | goofy | crazy",
    "🤪": "wacky | zany",
    "🤔": "thinking | hmm | hmmm | wondering | curious | think | idea?",
    "🤨": "suspicious | skeptical | really?",
    "😐": "meh | neutral | whatever",
    "🙄": "eye roll | rolling eyes | annoyed | ugh",
    "😏": "smirk | smug | flirty",
    "😴": "sleep | sleeping | asleep | nap | zzz | bedtime",
    "😪": "sleepy",
    "🥱": "yawn | yawning | bored | boring",
    "😷": "sick | ill | flu | mask | covid",
    "🤒": "fever | thermometer",
    "🤢": "gross | disgusting | nauseous | yuck",
    "🤮": "vomit | throw up | puke",
    "🥵": "hot | so hot | heatwave | sweaty",
    "🥶": "cold | freezing | so cold | frozen",
    "😵": "dizzy",
    "🤯": "mind blown | shocked | mindblown",
    "😎": "cool | sunglasses | chill | awesome",
    "🤓": "nerd | nerdy | geek | studying",
    "😕": "confused | puzzled",
    "😟": "worried | anxious | concerned",
    "😮": "wow | surprised | amazed",
    "😲": "astonished | shock",
    "😳": "embarrassed | blushing | flushed",
    "🥺": "please | pleading | puppy eyes | begging",
    "😨": "afraid | fearful",
    "😱": "scared | scream | screaming | terrified | omg | horror",
    "😢": "sad | sadness | unhappy | tear | crying | cry",
    "😭": "sobbing | sob | heartbroken | devastated",
    "😞": "disappointed | upset | let down",
    "😔": "lonely | sorry | regret | depressed",
    "😩": "exhausted | weary",
    "😫": "tired | stressed | so tired",
    "😤": "frustrated | determined | huffing",
    "😠": "angry | mad | grumpy",
    "😡": "furious | rage | pissed",
    "🤬": "swearing | cursing",
    "😈": "evil | naughty | devil",
    "💀": "dead | skull | im dead",
    "👻": "ghost | boo | spooky",
    "👽": "alien | aliens | ufo",
    "🤖": "robot | robots | ai | bot",
    "💩": "poop | poo | crap",
    "🤡": "clown | clowns",
    "😇": "angel | innocent | blessed | halo",
    "🤗": "hug | hugs | hugging | cuddle",
    "🤫": "shh | secret | quiet",
    "🤭": "oops | giggles",
    "🤐": "zip it | silence",
    "🥳": "party | partying | celebrate | celebration",
    "🤩": "excited | starstruck | amazing",
    "😌": "relaxed | relieved | calm | peaceful",
    "🙂": "fine | okay smile | slightly happy",
    "🙃": "upside down | sarcasm | sarcastic",
    "😬": "yikes | grimace | nervous",
    "🤥": "liar | lying",
    "🤤": "drooling | drool",
    "🤧": "sneeze | sneezing | cold and flu | allergies",
    "🤠": "cowboy | cowboys | yeehaw",
    "🥴": "drunk | woozy | tipsy",
    "😶": "speechless | no words",
    "🫠": "melting",
    # hearts
    "❤️": "love | loves | loving | heart | hearts | i love you | valentine",
    "💔": "broken heart | heartbreak | breakup",
    "💕": "two hearts | in love with",
    "💖": "sparkling heart",
    "💗": "growing heart",
    "💙": "blue heart",
    "💚": "green heart",
    "💛": "yellow heart",
    "💜": "purple heart",
    "🖤": "black heart",
    "🤍": "white heart",
    "🧡": "orange heart",
    "🤎": "brown heart",
    "💘": "cupid",
    "💌": "love letter",
    "💋": "lips | kiss mark | lipstick",
    # gestures and people
    "👍": "thumbs up | like | ok | okay | good job | agreed | yes",
    "👎": "thumbs down | dislike | bad | no way",
    "👏": "clap | clapping | applause | bravo | well done | congrats",
    "🙌": "hooray | yay | praise | raised hands",
    "🙏": "thank you | thanks | thx | pray | praying | please god | grateful | thankful",
    "💪": "strong | muscle | muscles | gym | workout | strength | flex",
    "👋": "hi | hello | hey | bye | goodbye | wave | waving",
    "✌️": "peace | victory | peace out",
    "🤞": "fingers crossed | good luck | hope",
    "👌": "perfect | ok hand | alright",
    "🤝": "handshake | deal | agreement | partnership",
    "👊": "fist bump | punch",
    "✊": "raised fist | solidarity | resist",
    "🤙": "call me | hang loose | shaka",
    "👉": "pointing right",
    "👀": "eyes | looking | watching | look | see",
    "👂": "ear | ears | listening | hear",
    "👃": "nose | smell",
    "👄": "mouth",
    "👅": "tongue",
    "🧠": "brain | smart | genius | clever",
    "🦷": "tooth | teeth | dentist",
    "🦴": "bone | bones",
    "🤷": "shrug | dunno | idk | who knows",
    "🤦": "facepalm | face palm | smh",
    "🙋": "raise hand | me | pick me",
    "🙅": "no no | not allowed | nope",
    "💁": "information desk person | sassy",
    "🙇": "bow | bowing | apology",
    "💃": "dance | dancing | dancer | salsa",
    "🕺": "disco | dancing man",
    "🏃": "run | running | runner | jogging | jog",
    "🚶": "walk | walking | stroll | hike",
    "🧘": "yoga | meditation | meditate",
    "👶": "baby | babies | newborn | infant",
    "🧒": "child | kid | kids | children",
    "👦": "boy | son",
    "👧": "girl | daughter",
    "👨": "man | guy | dad | father",
    "👩": "woman | lady | mom | mother | mum",
    "👴": "grandpa | grandfather | old man",
    "👵": "grandma | grandmother | granny | old woman",
    "👪": "family | families | parents",
    "💑": "couple | boyfriend | girlfriend | dating",
    "💍": "ring | engagement | engaged | wedding ring | propose",
    "👰": "bride | wedding | married | marry",
    "🤰": "pregnant | pregnancy",
    "👮": "police | cop | cops | police officer",
    "👨‍⚕️": "doctor | doctors | nurse",
    "👨‍🍳": "chef | cook | cooking",
    "👨‍🏫": "teacher | teachers | professor",
    "👨‍💻": "programmer | developer | coding | hacker | coder",
    "👨‍🚀": "astronaut | astronauts",
    "👸": "princess",
    "🤴": "prince",
    "👑": "king | queen | crown | royal",
    "🧛": "vampire | dracula",
    "🧟": "zombie | zombies",
    "🧙": "wizard | magic | witch | magician",
    "🧜": "mermaid",
    "🦸": "superhero | hero",
    "🎅": "santa | santa claus | father christmas",
    "👼": "baby angel",
    "🗣️": "speaking | talking | shout",
    "👤": "profile | user",
    # animals
    "🐶": "dog | dogs | puppy | puppies | doggo | pup | doggy",
    "🐕": "doggie",
    "🐱": "cat | cats | kitten | kitty | kittens | kitties",
    "🐭": "mouse | mice",
    "🐹": "hamster",
    "🐰": "rabbit | rabbits | bunny | bunnies | easter bunny",
    "🦊": "fox | foxes",
    "🐻": "bear | bears | teddy",
    "🐼": "panda | pandas",
    "🐨": "koala",
    "🐯": "tiger | tigers",
    "🦁": "lion | lions",
    "🐮": "cow | cows",
    "🐷": "pig | pigs | piggy",
    "🐸": "frog | frogs",
    "🐵": "monkey | monkeys",
    "🐔": "chicken | chickens | hen",
    "🐧": "penguin | penguins",
    "🐦": "bird | birds",
    "🐤": "chick | baby chick",
    "🦆": "duck | ducks",
    "🦅": "eagle | eagles",
    "🦉": "owl | owls",
    "🐴": "horse | horses | pony",
    "🦄": "unicorn | unicorns",
    "🐝": "bee | bees | honeybee",
    "🐛": "bug | bugs | caterpillar",
    "🦋": "butterfly | butterflies",
    "🐌": "snail | snails",
    "🐞": "ladybug | ladybird",
    "🐜": "ant | ants",
    "🕷️": "spider | spiders",
    "🐢": "turtle | turtles | tortoise",
    "🐍": "snake | snakes",
    "🦎": "lizard | lizards",
    "🦖": "dinosaur | dinosaurs | t rex | dino",
    "🐙": "octopus",
    "🦑": "squid",
    "🦀": "crab | crabs",
    "🐠": "fish | tropical fish | fishes",
    "🐬": "dolphin | dolphins",
    "🐳": "whale | whales",
    "🦈": "shark | sharks",
    "🐊": "crocodile | alligator",
    "🐘": "elephant | elephants",
    "🦒": "giraffe | giraffes",
    "🦓": "zebra | zebras",
    "🐪": "camel | camels",
    "🦘": "kangaroo",
    "🐑": "sheep | lamb",
    "🐐": "goat | goats",
    "🦌": "deer | reindeer",
    "🐿️": "squirrel | squirrels",
    "🦔": "hedgehog",
    "🦇": "bat | bats",
    "🐺": "wolf | wolves",
    "🦜": "parrot | parrots",
    "🦩": "flamingo",
    "🐾": "paw prints | paws | pets | pet",
    # plants and nature
    "🌹": "rose | roses | red rose",
    "🌸": "cherry blossom | blossom | sakura | spring",
    "🌷": "tulip | tulips",
    "🌻": "sunflower | sunflowers",
    "🌼": "daisy | flower | flowers",
    "💐": "bouquet | bunch of flowers",
    "🌺": "hibiscus",
    "🌳": "tree | trees | forest | woods",
    "🌲": "pine | pine tree",
    "🌴": "palm tree | palm trees | tropical",
    "🌵": "cactus | desert",
    "🍀": "lucky | luck | four leaf clover | clover",
    "🍁": "autumn | fall leaves | maple | canada leaf",
    "🍂": "leaves | fallen leaves",
    "🌱": "plant | plants | seedling | sprout | growing",
    "🍄": "mushroom | mushrooms",
    "🌍": "earth | world | planet | globe",
    "🌙": "moon | night | crescent",
    "🌕": "full moon",
    "⭐": "star | stars",
    "🌟": "shining star | superstar",
    "☀️": "sun | sunny | sunshine | summer",
    "⛅": "partly cloudy",
    "☁️": "cloud | clouds | cloudy | overcast",
    "🌧️": "rain | raining | rainy | rains",
    "⛈️": "storm | thunderstorm | thunder",
    "⚡": "lightning | electric | power | energy",
    "❄️": "snow | snowing | snowflake | snowy | winter",
    "⛄": "snowman",
    "🌈": "rainbow | rainbows | pride",
    "☔": "umbrella | umbrellas",
    "🌪️": "tornado | hurricane",
    "🌫️": "fog | foggy | mist",
    "🌬️": "wind | windy | breeze",
    "🌊": "wave | waves | ocean | sea | surf",
    "🔥": "fire | lit | hot stuff | flames | burning",
    "💧": "water | drop",
    "🌋": "volcano",
    "🏔️": "mountain | mountains | snowy mountain",
    "🏖️": "beach | beaches | seaside",
    "🏝️": "island | islands",
    # food and drink
    "🍕": "pizza | pizzas | slice of pizza",
    "🍔": "burger | burgers | hamburger | cheeseburger",
    "🍟": "fries | french fries | chips",
    "🌭": "hot dog | hotdog | hot dogs",
    "🌮": "taco | tacos",
    "🌯": "burrito | burritos | wrap",
    "🍣": "sushi",
    "🍜": "ramen | noodles | noodle soup | pho",
    "🍝": "pasta | spaghetti | noodle",
    "🍚": "rice",
    "🍛": "curry",
    "🍲": "soup | stew",
    "🥗": "salad | salads",
    "🥪": "sandwich | sandwiches",
    "🥐": "croissant | croissants",
    "🍞": "bread | toast | loaf",
    "🥖": "baguette",
    "🥯": "bagel | bagels",
    "🥞": "pancakes | pancake",
    "🧇": "waffle | waffles",
    "🥓": "bacon",
    "🥚": "egg | eggs | easter egg",
    "🍳": "fried egg | breakfast | cooking",
    "🧀": "cheese",
    "🥩": "steak | meat",
    "🍗": "fried chicken | chicken wings | drumstick",
    "🍖": "ribs | bbq | barbecue",
    "🍤": "shrimp | prawns",
    "🍩": "donut | donuts | doughnut",
    "🍪": "cookie | cookies | biscuit | biscuits",
    "🎂": "birthday cake | birthday | bday | happy birthday",
    "🍰": "cake | cakes | cheesecake",
    "🧁": "cupcake | cupcakes | muffin",
    "🥧": "pie | pies",
    "🍫": "chocolate | chocolates | candy bar",
    "🍬": "candy | sweets | candies",
    "🍭": "lollipop | lollipops",
    "🍦": "ice cream | soft serve",
    "🍨": "gelato | sundae",
    "🍿": "popcorn | movie night",
    "🍯": "honey",
    "🥜": "peanuts | peanut | nuts",
    "🍎": "apple | apples",
    "🍌": "banana | bananas",
    "🍓": "strawberry | strawberries",
    "🍇": "grapes | grape",
    "🍉": "watermelon",
    "🍊": "orange | oranges | tangerine",
    "🍋": "lemon | lemons",
    "🍒": "cherry | cherries",
    "🍑": "peach | peaches",
    "🍍": "pineapple",
    "🥭": "mango | mangoes",
    "🥝": "kiwi",
    "🍐": "pear | pears",
    "🥑": "avocado | avocados | guacamole",
    "🍅": "tomato | tomatoes",
    "🥕": "carrot | carrots",
    "🌽": "corn",
    "🥦": "broccoli | vegetables | veggies",
    "🥔": "potato | potatoes",
    "🧅": "onion | onions",
    "🧄": "garlic",
    "🌶️": "chili | spicy | hot pepper",
    "🥒": "cucumber",
    "☕": "coffee | espresso | latte | cappuccino | cup of coffee",
    "🍵": "tea | green tea | matcha",
    "🧋": "bubble tea | boba",
    "🥛": "milk",
    "🍺": "beer | beers | pint",
    "🍻": "cheers | drinks",
    "🍷": "wine | red wine",
    "🥂": "champagne | toast to | prosecco",
    "🍸": "cocktail | cocktails | martini",
    "🍹": "tropical drink | mojito",
    "🥃": "whiskey | whisky | bourbon",
    "🧃": "juice | juice box",
    "🥤": "soda | soft drink | coke | smoothie",
    "🍼": "baby bottle",
    "🍽️": "dinner | lunch | meal | restaurant",
    "🥄": "spoon",
    "🔪": "knife",
    # sports and activities
    "⚽": "soccer | football | futbol",
    "🏀": "basketball | nba",
    "🏈": "american football | nfl",
    "⚾": "baseball",
    "🎾": "tennis",
    "🏐": "volleyball",
    "🏉": "rugby",
    "🏓": "ping pong | table tennis",
    "🏸": "badminton",
    "🏒": "hockey | ice hockey",
    "⛳": "golf",
    "🥊": "boxing | boxer",
    "🥋": "karate | judo | martial arts",
    "🏊": "swim | swimming | swimmer | pool",
    "🚴": "cycling | biking | bike ride",
    "🏄": "surfing | surfer",
    "⛷️": "skiing | ski",
    "🏂": "snowboarding | snowboard",
    "⛸️": "ice skating | skating",
    "🏋️": "weightlifting | lifting weights",
    "🧗": "climbing | rock climbing",
    "🎣": "fishing",
    "🏆": "trophy | winner | champion | champions | win | won",
    "🥇": "gold medal | first place | gold",
    "🏅": "medal | medals",
    "🎮": "video games | gaming | gamer | video game | playstation | xbox",
    "🕹️": "joystick | arcade",
    "🎲": "dice | board game | board games",
    "♟️": "chess",
    "🃏": "cards | card game | poker",
    "🧩": "puzzle | jigsaw",
    "🎯": "target | bullseye | darts | goal",
    "🎳": "bowling",
    "🪁": "kite",
    "🛹": "skateboard | skateboarding",
    # music and arts
    "🎵": "music | song | songs | tune | melody",
    "🎶": "singing | sing | notes",
    "🎤": "microphone | karaoke | singer",
    "🎧": "headphones | listening to music | podcast",
    "🎸": "guitar | guitars | rock music",
    "🎹": "piano | keyboard music",
    "🥁": "drum | drums | drummer",
    "🎺": "trumpet",
    "🎷": "saxophone | sax | jazz",
    "🎻": "violin | cello",
    "🎨": "art | painting | paint | artist | drawing",
    "🎬": "movie | movies | film | cinema",
    "🎭": "theater | theatre | drama | acting",
    "📷": "camera | photo | photos | picture | pictures",
    "🤳": "selfie | selfies",
    "📚": "books | reading | library | study",
    "📖": "book | novel | read",
    "✏️": "pencil | write | writing",
    "📝": "notes | memo | homework",
    # travel and places
    "✈️": "plane | airplane | flight | flying | fly | airport",
    "🚗": "car | cars | drive | driving",
    "🚕": "taxi | cab | uber",
    "🚌": "bus | buses",
    "🚆": "train | trains | railway",
    "🚇": "subway | metro | underground",
    "🚲": "bike | bicycle",
    "🏍️": "motorcycle | motorbike",
    "🚀": "rocket | rockets | launch | space",
    "🚢": "ship | cruise | boat trip",
    "⛵": "sailboat | sailing | boat",
    "🚁": "helicopter",
    "🚓": "police car",
    "🚑": "ambulance | hospital emergency",
    "🚒": "fire truck | firefighter",
    "🚚": "truck | delivery",
    "🚦": "traffic light | traffic",
    "⛽": "gas | fuel | gas station",
    "🗺️": "map | maps",
    "🧳": "luggage | suitcase | packing",
    "🏠": "home | house | houses",
    "🏡": "garden | backyard",
    "🏢": "office | work | building",
    "🏫": "school | class",
    "🏥": "hospital",
    "🏦": "bank",
    "🏨": "hotel",
    "🏰": "castle | castles",
    "⛪": "church",
    "🕌": "mosque",
    "🗼": "tokyo tower",
    "🗽": "statue of liberty | new york",
    "🗻": "mount fuji",
    "🏕️": "camping | camp | tent",
    "🎡": "ferris wheel | amusement park | fair",
    "🎢": "roller coaster",
    "🌃": "city at night | night city",
    "🏙️": "city | cityscape | downtown",
    "🌅": "sunrise | morning | dawn",
    "🌇": "sunset | evening",
    "🗿": "moai",
    "🏞️": "park | national park | nature",
    "🛒": "shopping cart | groceries | supermarket",
    "🛍️": "shopping | shopping bags",
    # objects and tech
    "📱": "phone | smartphone | mobile | iphone | cell phone",
    "💻": "laptop | computer | pc",
    "⌨️": "keyboard | typing",
    "🖥️": "desktop | monitor | screen",
    "📺": "tv | television | netflix",
    "⌚": "watch | smartwatch",
    "⏰": "alarm | alarm clock | wake up | late",
    "⏳": "hourglass | waiting | time",
    "🔋": "battery",
    "🔌": "plug | charger | charging",
    "💡": "idea | light bulb | lightbulb | bright idea",
    "🔦": "flashlight | torch",
    "🕯️": "candle | candles",
    "💰": "money | cash | rich | dollars",
    "💸": "spending | expensive | paid",
    "💳": "credit card | card payment",
    "💎": "diamond | diamonds | gem | jewel",
    "🔑": "key | keys",
    "🔒": "lock | locked | security",
    "🔨": "hammer | tool | tools | fix",
    "🔧": "wrench | repair",
    "⚙️": "gear | settings",
    "🧲": "magnet",
    "💊": "pill | pills | medicine",
    "💉": "vaccine | injection | shot | needle",
    "🩺": "stethoscope | checkup",
    "🧪": "science | experiment | chemistry | lab",
    "🔬": "microscope | biology | research",
    "🔭": "telescope | astronomy",
    "📡": "satellite | antenna | signal",
    "✉️": "letter | envelope | mail",
    "📧": "email | e-mail | emails",
    "📦": "package | parcel | box",
    "🎁": "gift | gifts | present | presents",
    "🎈": "balloon | balloons",
    "🎀": "ribbon | bow",
    "👓": "glasses | spectacles",
    "🕶️": "shades",
    "👕": "shirt | t-shirt | tshirt",
    "👖": "jeans | pants | trousers",
    "👗": "dress | dresses",
    "👠": "heels | high heels",
    "👟": "sneakers | shoes | trainers | running shoes",
    "👒": "sun hat",
    "🧢": "cap | baseball cap",
    "🎩": "top hat | hat",
    "🧣": "scarf",
    "🧤": "gloves",
    "🧥": "coat | jacket",
    "👙": "bikini",
    "👜": "handbag | purse | bag",
    "🎒": "backpack | school bag",
    "☂️": "parasol",
    "🧸": "teddy bear | toy | toys",
    "🛏️": "bed | bedroom",
    "🛋️": "couch | sofa",
    "🚿": "shower",
    "🛁": "bath | bathtub",
    "🚽": "toilet | bathroom | loo",
    "🧹": "broom | cleaning | sweep",
    "🧻": "toilet paper",
    "🧼": "soap | wash hands",
    "🗑️": "trash | garbage | bin",
    "🪴": "potted plant | houseplant",
    "🔔": "bell | notification",
    "📢": "announcement | loudspeaker",
    "📣": "megaphone | cheer",
    "📅": "calendar | date | schedule",
    "📌": "pin | pinned",
    "📎": "paperclip",
    "✂️": "scissors | cut | haircut",
    "🖊️": "pen",
    "📰": "news | newspaper",
    "🪙": "coin | coins",
    # celebrations
    "🎉": "congratulations | congrats! | yay! | hurray | party popper | woohoo",
    "🎊": "confetti",
    "🎄": "christmas | xmas | christmas tree | merry christmas",
    "🎃": "halloween | pumpkin | pumpkins | jack o lantern",
    "🎆": "fireworks | new year | new years eve | nye",
    "🎇": "sparkler",
    "🧧": "red envelope | chinese new year | lunar new year",
    "🪔": "diwali",
    "🕎": "hanukkah | menorah",
    "🦃": "thanksgiving | turkey",
    "💒": "wedding chapel",
    "🎓": "graduation | graduate | graduated | diploma",
    "🎟️": "ticket | tickets",
    "🎫": "concert ticket",
    # symbols people use
    "💯": "100 | hundred percent | keep it real | absolutely",
    "✅": "done | check | finished | completed",
    "❌": "wrong | cancel | cross | no!",
    "⚠️": "warning | careful | caution",
    "♻️": "recycle | recycling",
    "☮️": "peace sign",
    "💤": "zzzz | snoring",
    "💥": "boom | explosion | bang | crash",
    "✨": "sparkles | sparkle | magic sparkles | shiny | glitter",
    "💦": "sweat | splash",
    "❓": "question | what?",
    "❗": "important | exclamation",
    "🆘": "sos | help",
}


@dataclass
class Lexicon:
    """One language's words: word (case-folded) -> emoji, and how often people use each word."""

    lang: str
    emoji_of: dict[str, str] = field(default_factory=dict)
    source_of: dict[str, str] = field(default_factory=dict)
    frequency: dict[str, float] = field(default_factory=dict)  # wordfreq's Zipf scale, 0 (unknown) to ~7

    def claim(self, word: str, char: str, source: str) -> None:
        key = " ".join(word.casefold().replace("’", "'").split())
        # A word has a letter and at least two characters (CJK: one): "4" names no clock.
        wordlike = any(c.isalpha() for c in key) and (len(key) >= 2 or ord(key[0]) > 0x2E80)
        if wordlike and key not in self.emoji_of and len(key) <= 40:
            self.emoji_of[key] = char
            self.source_of[key] = source

    def __len__(self) -> int:
        return len(self.emoji_of)


def unqualified(char: str) -> str:
    return char.replace(VS16, "")


@cache
def inventory() -> dict[str, str]:
    """The emoji the corpus uses: fully-qualified emoji keyed by their form without U+FE0F.

    Everyday categories, no skin tones, no gendered or family ZWJ variants,
    a few symbols and the flags of well-known countries.
    """
    countries = {"".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code) for code in COUNTRY_CODES}
    kept = {}
    for entry in EMOJI_DB:
        char = entry.emoji
        data = emoji.EMOJI_DATA.get(char)
        if data is None or data["status"] != emoji.STATUS["fully_qualified"]:
            continue
        if any(0x1F3FB <= ord(c) <= 0x1F3FF for c in char) or ("\u200d" in char and char not in EVERYDAY):
            continue
        if 0x1F550 <= ord(char[0]) <= 0x1F567:  # clock faces: their keywords are bare numbers
            continue
        if entry.category in CATEGORIES or char in SYMBOLS_KEPT or char in countries:
            kept[unqualified(char)] = char
    for char in EVERYDAY:
        if char in emoji.EMOJI_DATA:
            kept.setdefault(unqualified(char), char)
    return kept


def _cldr_annotations(lang: str) -> Iterable[tuple[str, str, list[str]]]:
    """(emoji, short name, keywords) from CLDR's annotations and derived annotations for `lang`."""
    for folder in ("annotations", "annotationsDerived"):
        path = CLDR_DIR / folder / f"{lang}.xml"
        if not path.is_file():
            continue
        names: dict[str, str] = {}
        keywords: dict[str, list[str]] = {}
        for node in ET.parse(path).getroot().iter("annotation"):
            text = (node.text or "").strip()
            if not text or text == "↑↑↑":
                continue
            if node.get("type") == "tts":
                names[node.get("cp")] = text
            else:
                keywords[node.get("cp")] = [k.strip() for k in text.split("|") if k.strip()]
        for cp in dict.fromkeys([*names, *keywords]):  # document order: a set's order changes per process
            yield cp, names.get(cp, ""), keywords.get(cp, [])


def _short_forms(name: str) -> list[str]:
    """The everyday part of a CLDR name: 'flag: France' -> 'France', 'pile of poo' stays."""
    if ":" in name:  # "flag: France", "Flagge: Frankreich", "drapeau : France"
        head, _, tail = name.partition(":")
        return [tail.strip()] if "flag" in head.casefold() or len(head) < 12 else [name]
    return [name]


def _clean_alias(alias: str) -> str:
    return alias.strip(":").replace("_", " ").strip()


@cache
def _wordnet_nouns() -> tuple[dict[str, list[str]], dict[str, str]]:
    """WordNet 3.0: lemma -> synonyms in its first (most common) sense, and irregular plural -> singular."""
    first_sense: dict[str, int] = {}
    for line in (WORDNET_DIR / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        parts = line.split()
        synset_count, pointer_count = int(parts[2]), int(parts[3])
        offsets = parts[6 + pointer_count :]
        if synset_count:
            first_sense[parts[0]] = int(offsets[0])
    data = (WORDNET_DIR / "data.noun").read_bytes()
    synonyms = {}
    for lemma, offset in first_sense.items():
        line = data[offset : data.index(b"\n", offset)].decode("latin-1").split()
        count = int(line[3], 16)
        words = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in line[4 : 4 + 2 * count : 2]]
        synonyms[lemma.replace("_", " ")] = words
    plurals = {}
    for line in (WORDNET_DIR / "noun.exc").read_text(encoding="latin-1").splitlines():
        plural, singular, *_ = line.split()
        plurals.setdefault(singular.replace("_", " "), plural.replace("_", " "))
    return synonyms, plurals


def plural(noun: str) -> str:
    """English plural: WordNet's irregular forms, else the spelling rules."""
    irregular = _wordnet_nouns()[1].get(noun)
    if irregular:
        return irregular
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


@cache
def _frequencies(lang: str) -> dict[str, float]:
    from wordfreq import get_frequency_dict

    return get_frequency_dict(lang)


def _zipf(word: str, lang: str) -> float:
    """Zipf frequency (log10 per billion words) of the rarest of its words; a plain lookup,
    so no tokenizer (MeCab, jieba) is needed for Japanese, Chinese or Korean."""
    table = _frequencies(lang)
    rarest = min(table.get(part, 0.0) for part in word.split()) if word.split() else 0.0
    return math.log10(rarest * 1e9) if rarest > 0 else 0.0


def build_lexicon(lang: str) -> Lexicon:
    """Every word of `lang` the sources give for the inventory's emoji, each owned by one emoji."""
    kept = inventory()
    lexicon = Lexicon(lang)
    annotations = [(kept[unqualified(cp)], name, kws) for cp, name, kws in _cldr_annotations(lang)
                   if unqualified(cp) in kept]  # fmt: skip
    hand_written = {c: w.split("|") for c, w in EVERYDAY.items()} if lang == "en" else everyday_words(lang)
    for char, words in hand_written.items():
        for word in words:
            lexicon.claim(word, char, "everyday")  # claim() trims the spaces around "|"
    for char, name, _ in annotations:
        for form in _short_forms(name):
            lexicon.claim(form, char, "cldr-name")
    if lang in emoji.LANGUAGES and lang != "en":
        emoji.config.load_language(lang)
    for char in kept.values():
        data = emoji.EMOJI_DATA.get(char, {})
        if lang in data:
            lexicon.claim(_clean_alias(data[lang]), char, "emoji-name")
    if lang == "en":
        gemoji = {entry.emoji: entry for entry in EMOJI_DB}
        for char in kept.values():
            aliases = emoji.EMOJI_DATA.get(char, {}).get("alias", []) + (gemoji[char].aliases if char in gemoji else [])
            for alias in aliases:
                lexicon.claim(_clean_alias(alias), char, "alias")
    # Keywords and tags: only those few emoji share.
    shared: dict[str, set[str]] = {}
    for char, _, keywords in annotations:
        for keyword in keywords:
            shared.setdefault(keyword.casefold(), set()).add(char)
    if lang == "en":
        for entry in EMOJI_DB:
            if unqualified(entry.emoji) in kept:
                for tag in entry.tags:
                    shared.setdefault(_clean_alias(tag).casefold(), set()).add(kept[unqualified(entry.emoji)])
    for char, _, keywords in annotations:
        for keyword in keywords:
            if len(shared[keyword.casefold()]) <= MAX_KEYWORD_SHARE:
                lexicon.claim(keyword, char, "cldr-keyword")
    if lang == "en":
        for entry in EMOJI_DB:
            char = kept.get(unqualified(entry.emoji))
            for tag in entry.tags if char else []:
                if len(shared[_clean_alias(tag).casefold()]) <= MAX_KEYWORD_SHARE:
                    lexicon.claim(_clean_alias(tag), char, "tag")
        _add_wordnet_forms(lexicon)
    if lang != "en":
        _add_family_keywords(lexicon, annotations, shared)
    lexicon.frequency = {word: _zipf(word, lang) for word in lexicon.emoji_of}
    return lexicon


def _add_family_keywords(lexicon: Lexicon, annotations: list, shared: dict[str, set[str]]) -> None:
    """Keywords a few emoji share, for the first of them (CLDR order) that people use every day."""
    for char, _, keywords in annotations:
        for keyword in keywords:
            family = shared[keyword.casefold()]
            if MAX_KEYWORD_SHARE < len(family) <= MAX_FAMILY_SHARE and char in EVERYDAY:
                lexicon.claim(keyword, char, "family-keyword")


def _add_wordnet_forms(lexicon: Lexicon) -> None:
    """Synonyms of one-word names in their first WordNet sense, and plurals of every one-word noun."""
    synonyms, _ = _wordnet_nouns()
    for word, char in list(lexicon.emoji_of.items()):
        if " " in word or lexicon.source_of[word] not in ("everyday", "cldr-name", "emoji-name"):
            continue
        for synonym in synonyms.get(word, []):
            if synonym != word and _zipf(synonym, "en") >= 2.5:
                lexicon.claim(synonym, char, "wordnet")
    for word, char in list(lexicon.emoji_of.items()):
        if word.isalpha() and word in synonyms and len(word) > 2 and not word.endswith("s"):
            lexicon.claim(plural(word), char, "plural")
