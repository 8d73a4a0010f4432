"""Everyday words in the corpus's other languages, written by hand, for the emoji people use most.

CLDR gives every emoji a name and keywords, but as a dictionary writes them: "chat",
"visage qui pleure". People type chat words ("mdr", "ㅋㅋㅋ"), greetings ("bonne nuit",
"с днём рождения"), adjectives for the weather and their mood ("heiß", "che freddo") and
inflected forms ("собаку", "psa"). The same concepts for every language, one line per emoji
("emoji word | word | ..."), each mapped to the emoji the English EVERYDAY words use.
Training-time only, like the rest of the lexicon.
"""

from __future__ import annotations

# fmt: off
_WORDS = {
    "fr": """
😂 mdr | ptdr | hahaha | trop drôle | mort de rire | je suis mort | jpp
😊 content | contente | heureux | heureuse | trop content
😍 magnifique | trop beau | trop belle | je craque | coup de foudre
🥰 je t'aime | mignon | mignonne | trop chou
😘 bisous | bisou | gros bisous | bises | je t'embrasse
😋 miam | délicieux | trop bon | c'est bon
🤔 je réfléchis | bizarre | hmm | je me demande
😴 dodo | dormir | je dors | au lit | sieste
😷 malade | grippe | rhume | j'ai de la fièvre
🥵 chaud | il fait chaud | canicule | trop chaud
🥶 froid | il fait froid | glacial | je gèle | caille
😱 j'ai peur | horreur | oh non | au secours
😢 triste | trop triste | ça me rend triste | déçu
😭 je pleure | en larmes | snif
😫 fatigué | fatiguée | crevé | crevée | épuisé | j'en peux plus
😡 énervé | énervée | en colère | furieux | ça m'énerve
🥳 fête | soirée | on fait la fête | teuf
🤗 câlin | câlins | gros câlin
❤️ amour | je t'adore | mon amour | mon cœur
💔 cœur brisé | rupture | chagrin d'amour
👍 d'accord | ok | ça marche | top | nickel
👏 bravo | chapeau | applaudissements
🙏 merci | merci beaucoup | s'il te plaît | svp | stp
💪 courage | force | musculation | t'es fort
👋 salut | coucou | bonjour | bonsoir | au revoir | à plus | ciao
🤞 bonne chance | croise les doigts
🎉 félicitations | bravo à toi | youpi | super nouvelle
🎂 joyeux anniversaire | bon anniversaire | anniversaire | mon anniv
🎄 joyeux noël | noël | sapin de noël | réveillon
🎆 bonne année | nouvel an | feu d'artifice | la saint-sylvestre
🎁 cadeau | cadeaux | un petit cadeau
🐶 chien | chiens | chiot | toutou | mon chien
🐱 chat | chats | chaton | minou | mon chat
🐰 lapin | lapins | lapinou
🌹 rose | roses | une rose rouge
🌸 fleurs | printemps | cerisier en fleurs
☀️ soleil | beau temps | ensoleillé | il fait beau
🌙 bonne nuit | lune | la nuit
🌧️ pluie | il pleut | pleuvoir | temps pourri
❄️ neige | il neige | flocons
⛈️ orage | tempête | tonnerre
🌈 arc-en-ciel
🔥 feu | incroyable | de ouf | ça déchire
🏖️ plage | vacances | à la mer | bronzer
🏔️ montagne | randonnée | à la montagne
🍕 pizza | pizzas
🍝 pâtes | spaghetti | carbonara
🍔 burger | hamburger | macdo
🍰 gâteau | dessert | pâtisserie
🍫 chocolat | chocolats
🍦 glace | une glace
🥐 croissant | croissants | pain au chocolat | viennoiseries
🍞 pain | baguette | tartine
🍷 vin | vin rouge | apéro | un verre de vin
🍺 bière | bières | une pinte
☕ café | un café | petit café | expresso
🍵 thé | un thé | tisane
⚽ foot | football | but | match de foot | le match
🏀 basket | basketball
🎾 tennis
🏃 courir | course | footing | marathon | jogging
🏋️ salle de sport | muscu | sport
🏆 victoire | on a gagné | champion | champions
🎵 musique | chanson | une chanson | playlist
🎤 chanter | karaoké | chanteur | chanteuse
🎸 guitare | rock
🎬 film | cinéma | au ciné | série
📚 livre | livres | lire | bouquin
✈️ avion | vol | aéroport | on prend l'avion
🚆 train | en train | tgv | gare
🚗 voiture | en voiture | route
🧳 valise | voyage | faire les valises
🏠 maison | chez moi | à la maison
🏢 boulot | travail | bureau | taf
📱 téléphone | portable | mon tel | smartphone
💻 ordi | ordinateur | pc portable
🔋 batterie | plus de batterie | recharger
🔑 clés | clefs | mes clés
💰 argent | thunes | fric | salaire
📷 photo | photos | appareil photo
""",
    "de": """
😂 haha | hahaha | lol | zu geil | ich lach mich tot | voll lustig | witzig
😊 glücklich | froh | freue mich | ich freu mich so
😍 wunderschön | verliebt | so schön | traumhaft
🥰 ich liebe dich | hab dich lieb | hdl | süß | niedlich | zu süß
😘 küsschen | kuss | küsse | bussi | knutscher
😋 lecker | sehr lecker | mega lecker | mmh
🤔 hmm | keine ahnung | ich überlege | komisch
😴 schlafen | müde | ich geh pennen | pennen | gute nacht
😷 krank | erkältet | grippe | fieber
🥵 heiß | so heiß | hitze | es ist heiß | warm
🥶 kalt | so kalt | eiskalt | es ist kalt | frieren
😱 oh nein | angst | schrecklich | hilfe
😢 traurig | so traurig | schade | enttäuscht
😭 ich weine | heulen | tränen
😫 fertig | total fertig | erschöpft | k.o. | kaputt | stress
😡 wütend | sauer | genervt | ich bin sauer
🥳 party | feiern | wir feiern | fete
🤗 umarmung | drück dich | knuddeln
❤️ liebe | ich liebe | schatz | mein schatz
💔 liebeskummer | gebrochenes herz | schluss gemacht
👍 okay | ok | passt | gut | alles klar | super
👏 bravo | klasse | applaus | gut gemacht
🙏 danke | danke schön | vielen dank | bitte
💪 stark | kraft | du schaffst das
👋 hallo | hi | servus | moin | tschüss | bis später | guten tag
🤞 viel glück | daumen drücken | ich drück dir die daumen
🎉 glückwunsch | herzlichen glückwunsch | gratuliere | yeah
🎂 alles gute zum geburtstag | geburtstag | happy birthday | alles gute
🎄 frohe weihnachten | weihnachten | weihnachtsbaum | heiligabend
🎆 frohes neues | frohes neues jahr | silvester | feuerwerk | guten rutsch
🎁 geschenk | geschenke
🐶 hund | hunde | hündchen | welpe | mein hund
🐱 katze | katzen | kätzchen | kater | miau
🐰 hase | hasen | kaninchen | häschen
🌹 rose | rosen | rote rose
🌸 blumen | frühling | kirschblüte
☀️ sonne | sonnig | sonnenschein | schönes wetter
🌙 gute nacht | mond | nachts
🌧️ regen | es regnet | regnerisch | schietwetter
❄️ schnee | es schneit | schneeflocken
⛈️ gewitter | sturm | donner
🌈 regenbogen
🔥 feuer | krass | mega | der hammer
🏖️ strand | urlaub | am meer | sommerurlaub
🏔️ berge | wandern | in den bergen
🍕 pizza | pizzen
🍝 nudeln | pasta | spaghetti
🍔 burger | hamburger
🍰 kuchen | torte | kaffee und kuchen
🍫 schokolade | schoki
🍦 eis | ein eis | eisdiele
🥨 brezel | brezeln | breze
🍞 brot | brötchen
🍷 wein | rotwein | weißwein
🍺 bier | ein bier | prost | biergarten
☕ kaffee | einen kaffee | cappuccino
🍵 tee | einen tee
⚽ fußball | tor | das spiel | fußballspiel | bundesliga
🏀 basketball
🎾 tennis
🏃 laufen | joggen | marathon | rennen
🏋️ fitnessstudio | gym | training | sport
🏆 gewonnen | sieg | meister | pokal
🎵 musik | lied | song | playlist
🎤 singen | karaoke | sänger | sängerin
🎸 gitarre | rockmusik
🎬 film | kino | serie
📚 buch | bücher | lesen
✈️ flugzeug | fliegen | flug | flughafen
🚆 zug | bahn | mit dem zug | bahnhof
🚗 auto | mit dem auto | autofahren
🧳 koffer | reise | verreisen | koffer packen
🏠 zuhause | zu hause | haus | daheim
🏢 arbeit | büro | job
📱 handy | smartphone | telefon
💻 laptop | computer | rechner
🔋 akku | akku leer | aufladen
🔑 schlüssel | meine schlüssel
💰 geld | kohle | gehalt
📷 foto | fotos | kamera
""",
    "es": """
😂 jajaja | jaja | jajajaja | xd | me muero de risa | qué risa | muy gracioso
😊 feliz | contento | contenta | alegre | qué felicidad
😍 precioso | preciosa | enamorado | enamorada | qué bonito | guapísima
🥰 te quiero | te amo | qué mono | qué cuqui | lindo | tierno
😘 besos | beso | un beso | besitos | muak
😋 rico | qué rico | delicioso | riquísimo | buenísimo
🤔 mmm | no sé | pensando | qué raro
😴 dormir | sueño | tengo sueño | siesta | a dormir
😷 enfermo | enferma | resfriado | gripe | fiebre
🥵 calor | qué calor | hace calor | mucho calor
🥶 frío | qué frío | hace frío | me congelo
😱 qué miedo | miedo | ay no | socorro
😢 triste | qué pena | estoy triste | deprimido
😭 llorando | lloro | lágrimas
😫 cansado | cansada | agotado | reventado | estoy muerto | qué estrés
😡 enfadado | enfadada | cabreado | furioso | qué rabia
🥳 fiesta | de fiesta | fiestón | a celebrar
🤗 abrazo | abrazos | un abrazo
❤️ amor | mi amor | cariño | corazón
💔 corazón roto | desamor | me dejó
👍 vale | ok | perfecto | genial | de acuerdo | bien
👏 bravo | olé | aplausos | muy bien hecho
🙏 gracias | muchas gracias | por favor | porfa
💪 fuerza | fuerte | tú puedes | ánimo
👋 hola | holaa | buenas | adiós | hasta luego | chao | nos vemos
🤞 suerte | mucha suerte | crucemos los dedos
🎉 felicidades | enhorabuena | felicitaciones | qué bien
🎂 feliz cumpleaños | feliz cumple | cumpleaños | cumple
🎄 feliz navidad | navidad | árbol de navidad | nochebuena
🎆 feliz año nuevo | año nuevo | nochevieja | fuegos artificiales
🎁 regalo | regalos
🐶 perro | perros | perrito | cachorro | mi perro
🐱 gato | gatos | gatito | mi gato | michi
🐰 conejo | conejos | conejito
🌹 rosa | rosas | una rosa roja
🌸 flores | primavera | flor
☀️ sol | soleado | qué buen día | hace sol
🌙 buenas noches | luna | de noche
🌧️ lluvia | llueve | está lloviendo | lloviendo
❄️ nieve | nieva | está nevando
⛈️ tormenta | truenos | tormentas
🌈 arcoíris | arco iris
🔥 fuego | brutal | increíble | qué pasada
🏖️ playa | vacaciones | la playa | verano
🏔️ montaña | montañas | senderismo
🍕 pizza | pizzas
🍝 pasta | espaguetis | macarrones
🍔 hamburguesa | hamburguesas
🍰 tarta | pastel | postre
🍫 chocolate | chocolates
🍦 helado | helados
🥘 paella | tortilla | tapas
🍞 pan | tostada
🍷 vino | vino tinto | una copa de vino
🍺 cerveza | cervezas | birra
☕ café | un café | cafecito | café con leche
🍵 té | un té
⚽ fútbol | gol | el partido | partido de fútbol
🏀 baloncesto | básquet
🎾 tenis
🏃 correr | carrera | maratón | running
🏋️ gimnasio | gym | entrenar
🏆 ganamos | campeones | victoria | copa
🎵 música | canción | canciones | playlist
🎤 cantar | karaoke | cantante | concierto
🎸 guitarra | rock
🎬 película | cine | peli | serie
📚 libro | libros | leer
✈️ avión | vuelo | aeropuerto | volar
🚆 tren | en tren | estación
🚗 coche | carro | en coche
🧳 maleta | viaje | de viaje
🏠 casa | en casa | mi casa
🏢 trabajo | oficina | curro
📱 móvil | celular | teléfono | el móvil
💻 portátil | ordenador | computadora
🔋 batería | sin batería | cargar el móvil
🔑 llaves | las llaves
💰 dinero | pasta gansa | plata | sueldo
📷 foto | fotos | cámara
""",
    "it": """
😂 ahahah | ahah | ahahahah | che ridere | muoio | troppo divertente | lol
😊 felice | contento | contenta | che bello
😍 bellissimo | bellissima | innamorato | innamorata | stupendo
🥰 ti amo | ti voglio bene | tvb | carino | carina | tenero | che tenero
😘 baci | bacio | un bacio | bacioni | smack
😋 buono | buonissimo | delizioso | che buono | gnam
🤔 boh | mah | ci penso | strano
😴 dormire | sonno | che sonno | a letto | pisolino
😷 malato | malata | raffreddore | influenza | febbre
🥵 caldo | che caldo | fa caldo | afa
🥶 freddo | che freddo | fa freddo | si gela
😱 paura | che paura | aiuto | oddio
😢 triste | che tristezza | sono triste | peccato
😭 piango | lacrime | sto piangendo
😫 stanco | stanca | distrutto | distrutta | sfinito | stress
😡 arrabbiato | arrabbiata | incazzato | che rabbia
🥳 festa | si festeggia | festeggiamo
🤗 abbraccio | abbracci | un abbraccio
❤️ amore | amore mio | tesoro | cuore
💔 cuore spezzato | mi ha lasciato
👍 ok | va bene | perfetto | d'accordo | ottimo
👏 bravo | brava | bravissimo | applausi | complimenti
🙏 grazie | grazie mille | per favore | per piacere
💪 forza | forte | ce la puoi fare | dai
👋 ciao | ciaoo | salve | buongiorno | arrivederci | a dopo
🤞 in bocca al lupo | buona fortuna | incrocio le dita
🎉 congratulazioni | auguri | evviva
🎂 buon compleanno | compleanno | tanti auguri
🎄 buon natale | natale | albero di natale | vigilia
🎆 buon anno | capodanno | fuochi d'artificio | felice anno nuovo
🎁 regalo | regali
🐶 cane | cani | cagnolino | cucciolo | il mio cane
🐱 gatto | gatti | gattino | micio
🐰 coniglio | conigli | coniglietto
🌹 rosa | rose | una rosa rossa
🌸 fiori | primavera | fiore
☀️ sole | soleggiato | bella giornata | c'è il sole
🌙 buonanotte | notte | luna
🌧️ pioggia | piove | sta piovendo
❄️ neve | nevica | sta nevicando
⛈️ temporale | tempesta | tuoni
🌈 arcobaleno
🔥 fuoco | pazzesco | top | spacca
🏖️ spiaggia | mare | vacanze | al mare
🏔️ montagna | montagne | in montagna
🍕 pizza | pizze | pizzeria
🍝 pasta | spaghetti | lasagne
🍔 hamburger | panino
🍰 torta | dolce | tiramisù
🍫 cioccolato | cioccolata
🍦 gelato | gelati
🍞 pane | focaccia
🍷 vino | vino rosso | un bicchiere di vino | aperitivo | spritz
🍺 birra | birre | una birra
☕ caffè | un caffè | espresso | cappuccino
🍵 tè | una tazza di tè
⚽ calcio | gol | la partita | partita di calcio
🏀 basket | pallacanestro
🎾 tennis
🏃 correre | corsa | maratona
🏋️ palestra | allenamento | in palestra
🏆 abbiamo vinto | campioni | vittoria | coppa
🎵 musica | canzone | canzoni | album
🎤 cantare | karaoke | cantante | concerto
🎸 chitarra | rock
🎬 film | cinema | serie tv
📚 libro | libri | leggere
✈️ aereo | volo | aeroporto
🚆 treno | in treno | stazione
🚗 macchina | auto | in macchina
🧳 valigia | viaggio | in viaggio
🏠 casa | a casa
🏢 lavoro | ufficio
📱 telefono | cellulare | smartphone
💻 computer | portatile | pc
🔋 batteria | batteria scarica | caricare
🔑 chiavi | le chiavi
💰 soldi | stipendio | denaro
📷 foto | fotografia | macchina fotografica
""",
    "pt": """
😂 kkkk | kkkkkk | rsrs | hahaha | morri de rir | muito engraçado | que engraçado
😊 feliz | contente | alegre | que alegria
😍 lindo | linda | maravilhoso | apaixonado | apaixonada
🥰 te amo | amo você | fofo | fofa | que fofo | fofinho
😘 beijos | beijo | bjs | beijinho | beijão
😋 delícia | gostoso | que delícia | uma delícia
🤔 hmm | sei lá | pensando | estranho
😴 dormir | sono | to com sono | soneca
😷 doente | gripe | resfriado | febre
🥵 calor | que calor | tá calor | muito calor
🥶 frio | que frio | tá frio | congelando
😱 medo | que medo | socorro | ai meu deus
😢 triste | que triste | to triste
😭 chorando | chorei | lágrimas
😫 cansado | cansada | exausto | exausta | morto de cansaço
😡 bravo | brava | com raiva | irritado | que raiva
🥳 festa | balada | bora comemorar | comemorar
🤗 abraço | abraços | um abraço
❤️ amor | meu amor | querido | querida | coração
💔 coração partido | fim de namoro | terminou comigo
👍 ok | beleza | blz | tá bom | combinado | show
👏 parabéns pelo trabalho | arrasou | mandou bem | aplausos
🙏 obrigado | obrigada | valeu | muito obrigado | por favor | pfv
💪 força | forte | você consegue | bora
👋 oi | olá | oie | tchau | até mais | bom dia | boa tarde
🤞 boa sorte | dedos cruzados
🎉 parabéns | felicidades | que notícia boa
🎂 feliz aniversário | aniversário | niver
🎄 feliz natal | natal | árvore de natal | ceia de natal
🎆 feliz ano novo | ano novo | réveillon | fogos de artifício
🎁 presente | presentes
🐶 cachorro | cachorros | cachorrinho | cão | filhote
🐱 gato | gatos | gatinho | gata
🐰 coelho | coelhos | coelhinho
🌹 rosa | rosas | uma rosa vermelha
🌸 flores | primavera | flor
☀️ sol | ensolarado | dia lindo | que sol
🌙 boa noite | lua | de noite
🌧️ chuva | chovendo | tá chovendo | choveu
❄️ neve | nevando
⛈️ tempestade | trovão | temporal
🌈 arco-íris
🔥 fogo | incrível | top demais | brabo
🏖️ praia | férias | na praia | verão
🏔️ montanha | montanhas | trilha
🍕 pizza | pizzas
🍝 macarrão | massa | espaguete
🍔 hambúrguer | lanche
🍰 bolo | sobremesa | bolo de chocolate
🍫 chocolate | brigadeiro
🍦 sorvete | sorvetes
🍖 carne
🍞 pão | pão de queijo
🍷 vinho | vinho tinto | uma taça de vinho
🍺 cerveja | cerveja gelada | uma cerva | chopp | chope
☕ café | um cafezinho | cafezinho
🍵 chá | um chá
⚽ futebol | gol | golaço | o jogo | jogo de futebol
🏀 basquete
🎾 tênis
🏃 correr | corrida | maratona
🏋️ academia | treino | malhar
🏆 ganhamos | campeão | campeões | vitória | taça
🎵 música | músicas | canção
🎤 cantar | karaokê | cantor | cantora | show
🎸 violão | guitarra | rock
🎬 filme | cinema | série
📚 livro | livros | ler
✈️ avião | voo | aeroporto | viagem de avião
🚆 trem | de trem | metrô
🚗 carro | de carro
🧳 mala | viagem
🏠 casa | em casa | minha casa
🏢 trabalho | escritório | serviço
📱 celular | telefone | zap | whatsapp
💻 notebook | computador | pc
🔋 bateria | sem bateria | carregar
🔑 chaves | a chave
💰 dinheiro | grana | salário
📷 foto | fotos | câmera
""",
    "nl": """
😂 haha | hahaha | lol | zo grappig | ik lig dubbel | hilarisch
😊 blij | gelukkig | vrolijk | zo blij
😍 prachtig | verliefd | zo mooi | schitterend
🥰 ik hou van je | hou van jou | schattig | lief | zo lief | snoezig
😘 kusjes | kusje | dikke kus | xxx
😋 lekker | heerlijk | smullen | jammie
🤔 hmm | geen idee | ik twijfel | raar
😴 slapen | slaap | moe | bedtijd | dutje
😷 ziek | verkouden | griep | koorts
🥵 warm | heet | wat is het warm | hittegolf | tropisch
🥶 koud | wat is het koud | ijskoud | vriezen
😱 eng | oh nee | help | schrik
😢 verdrietig | jammer | zo zielig | teleurgesteld
😭 huilen | ik moet huilen | tranen
😫 moe | doodmoe | kapot | uitgeput | stress
😡 boos | kwaad | woedend | geïrriteerd
🥳 feest | feestje | feesten | party
🤗 knuffel | knuffels | dikke knuffel
❤️ liefde | lieverd | schat | mijn schat
💔 liefdesverdriet | gebroken hart | het is uit
👍 oké | ok | prima | goed | top | helemaal goed
👏 bravo | goed gedaan | applaus | knap
🙏 dank je | dankjewel | bedankt | alsjeblieft | graag
💪 sterk | kracht | zet hem op | je kan het
👋 hoi | hallo | hey | doei | tot straks | goedemorgen | dag
🤞 succes | veel succes | duimen
🎉 gefeliciteerd | proficiat | hoera | gefeliciteerd met je
🎂 fijne verjaardag | verjaardag | hartelijk gefeliciteerd | jarig
🎄 vrolijk kerstfeest | fijne kerst | kerst | kerstboom
🎆 gelukkig nieuwjaar | oud en nieuw | vuurwerk | oudjaarsavond
🎁 cadeau | cadeautje | cadeaus
🐶 hond | honden | hondje | puppy
🐱 kat | katten | poes | poesje | kitten
🐰 konijn | konijnen
🌹 roos | rozen | rode roos
🌸 bloemen | lente | bloesem | tulpen
☀️ zon | zonnig | zonnetje | mooi weer
🌙 welterusten | slaap lekker | maan | nacht
🌧️ regen | het regent | regenachtig
❄️ sneeuw | het sneeuwt | sneeuwvlokken
⛈️ onweer | storm | donder
🌈 regenboog
🔥 vuur | vet | te gek | geweldig
🏖️ strand | vakantie | naar zee | zomer
🏔️ bergen | wandelen | op wintersport
🍕 pizza | pizza's
🍝 pasta | spaghetti
🍔 hamburger | burger | patat
🍰 taart | gebak | appeltaart
🍫 chocola | chocolade
🍦 ijsje | ijs
🧇 poffertjes
🍞 brood | boterham | broodje
🍷 wijn | rode wijn | wijntje
🍺 bier | biertje | pilsje | proost
☕ koffie | bakkie | een kopje koffie
🍵 thee | kopje thee
⚽ voetbal | goal | doelpunt | de wedstrijd
🏀 basketbal
🎾 tennis
🏃 hardlopen | rennen | marathon
🏋️ sportschool | gym | trainen | sporten
🏆 gewonnen | kampioen | winnaar | beker
🎵 muziek | liedje | nummer | playlist
🎤 zingen | karaoke | zanger | zangeres | concert
🎸 gitaar | rock
🎬 film | bioscoop | serie
📚 boek | boeken | lezen
✈️ vliegtuig | vliegen | vlucht | schiphol
🚆 trein | met de trein | station
🚗 auto | met de auto
🚲 fiets | fietsen | op de fiets
🧳 koffer | reizen | op reis
🏠 thuis | huis | naar huis
🏢 werk | kantoor | baan
📱 telefoon | mobiel | smartphone
💻 laptop | computer
🔋 batterij | accu | opladen
🔑 sleutels | sleutel
💰 geld | salaris | poen
📷 foto | foto's | camera
""",
    "ru": """
😂 ахаха | хахаха | ахахах | ржу | ржака | смешно | очень смешно | лол
😊 рад | рада | счастлив | счастлива | радость | я так рада
😍 красиво | красивая | влюбилась | влюбился | прекрасно
🥰 люблю тебя | милый | милая | милота | мило
😘 целую | поцелуй | чмок
😋 вкусно | очень вкусно | вкуснятина | ням
🤔 хм | не знаю | думаю | странно
😴 спать | сон | хочу спать | спокойной ночи | сплю
😷 болею | заболел | заболела | простуда | грипп | температура
🥵 жарко | жара | так жарко | очень жарко
🥶 холодно | мороз | так холодно | замёрз | замерзла
😱 страшно | ужас | кошмар | боюсь
😢 грустно | печально | жаль | тоска
😭 плачу | слёзы | реву
😫 устал | устала | так устала | нет сил | задолбался
😡 злой | злая | бесит | злюсь | сердитый
🥳 праздник | вечеринка | тусовка | отмечаем
🤗 обнимаю | объятия | обнимашки
❤️ любовь | люблю | любимый | любимая
💔 разбитое сердце | расстались | бросил меня
👍 хорошо | ок | окей | ладно | отлично | договорились | класс
👏 браво | молодец | аплодисменты | умница
🙏 спасибо | спасибо большое | пожалуйста | благодарю
💪 сила | сильный | держись | ты сможешь
👋 привет | здравствуйте | пока | до встречи | доброе утро
🤞 удачи | ни пуха ни пера | скрестим пальцы
🎉 поздравляю | поздравляем | ура
🎂 с днём рождения | с днем рождения | день рождения | днюха
🎄 с рождеством | рождество | ёлка | елка
🎆 с новым годом | новый год | фейерверк
🎁 подарок | подарки | подарочек
🐶 собака | собаку | собаки | собакой | собачка | пёс | щенок
🐱 кот | кошка | кошку | коты | котик | котёнок | котенок
🐰 кролик | кролика | зайчик | заяц
🌹 роза | розы | розу
🌸 цветы | весна | цветочки
☀️ солнце | солнечно | хорошая погода
🌙 луна | ночь | ночью
🌧️ дождь | идёт дождь | дождик | льёт
❄️ снег | снегопад | идёт снег
⛈️ гроза | буря | гром
🌈 радуга
🔥 огонь | огонь просто | круто | жесть
🏖️ пляж | отпуск | море | на море
🏔️ горы | в горах | поход
🍕 пицца | пиццу | пиццы
🍝 паста | макароны | спагетти
🍔 бургер | гамбургер
🍰 торт | тортик | пирожное | десерт
🍫 шоколад | шоколадка
🍦 мороженое | мороженку
🍞 хлеб | бутерброд
🍷 вино | бокал вина | красное вино
🍺 пиво | пивко | по пиву
☕ кофе | кофеёк | чашка кофе
🍵 чай | чаю | чашка чая
⚽ футбол | гол | матч | футбольный матч
🏀 баскетбол
🎾 теннис
🏃 бег | бегать | марафон | пробежка
🏋️ спортзал | зал | тренировка | качалка
🏆 победа | победили | чемпион | кубок
🎵 музыка | песня | песню | песни
🎤 петь | караоке | певица | певец | концерт
🎸 гитара | гитару | рок
🎬 кино | фильм | сериал
📚 книга | книгу | книги | читать
✈️ самолёт | самолет | лететь | рейс | аэропорт
🚆 поезд | на поезде | электричка | вокзал
🚗 машина | машину | на машине
🧳 чемодан | путешествие | поездка
🏠 дом | дома | домой
🏢 работа | на работе | офис
📱 телефон | смартфон | мобильник
💻 ноутбук | компьютер | комп
🔋 батарейка | зарядка | сел телефон
🔑 ключи | ключ
💰 деньги | зарплата | бабки
📷 фото | фотка | фотографии
🍄 грибы | гриб
🌲 лес | в лесу
""",
    "pl": """
😂 haha | hahaha | xd | śmiesznie | ale śmieszne | padłem
😊 szczęśliwy | szczęśliwa | zadowolony | zadowolona | cieszę się
😍 piękny | piękna | zakochany | zakochana | cudowne
🥰 kocham cię | słodki | słodka | uroczy | urocza
😘 buziaki | buziak | całuję | buzi
😋 pyszne | pycha | smaczne | mniam
🤔 hmm | nie wiem | zastanawiam się | dziwne
😴 spać | śpię | śpiący | dobranoc | drzemka
😷 chory | chora | przeziębiony | grypa | gorączka
🥵 gorąco | upał | ale gorąco
🥶 zimno | mróz | ale zimno | zmarzłem
😱 boję się | straszne | o nie | ratunku
😢 smutny | smutna | smutno | szkoda | przykro mi
😭 płaczę | łzy
😫 zmęczony | zmęczona | padnięty | nie mam siły
😡 zły | zła | wściekły | wkurzony
🥳 impreza | imprezka | świętujemy
🤗 przytulas | uściski | przytulam
❤️ miłość | kochanie | kocham
💔 złamane serce | rozstanie
👍 ok | dobrze | spoko | super | jasne
👏 brawo | gratulacje za | oklaski | dobra robota
🙏 dziękuję | dzięki | proszę | bardzo dziękuję
💪 siła | silny | dasz radę
👋 cześć | hej | siema | dzień dobry | do zobaczenia | na razie
🤞 powodzenia | trzymam kciuki
🎉 gratulacje | gratuluję | hurra
🎂 wszystkiego najlepszego | sto lat | urodziny
🎄 wesołych świąt | boże narodzenie | choinka | wigilia
🎆 szczęśliwego nowego roku | nowy rok | sylwester | fajerwerki
🎁 prezent | prezenty
🐶 pies | psa | psy | piesek | szczeniak
🐱 kot | kota | koty | kotek | kociak
🐰 królik | króliczek | zając
🌹 róża | róże | różę
🌸 kwiaty | wiosna | kwiatek
☀️ słońce | słonecznie | ładna pogoda
🌙 księżyc | noc | w nocy
🌧️ deszcz | pada deszcz | pada | leje
❄️ śnieg | pada śnieg
⛈️ burza | grzmot
🌈 tęcza
🔥 ogień | czad | sztos | mega
🏖️ plaża | wakacje | nad morzem | urlop
🏔️ góry | w górach | wędrówka
🍕 pizza | pizzę
🍝 makaron | spaghetti
🍔 burger | hamburger
🍰 ciasto | tort | deser
🍫 czekolada | czekoladę
🍦 lody | loda
🥟 pierogi | pierożki
🍞 chleb | kanapka
🍷 wino | lampka wina
🍺 piwo | piwko | na piwo
☕ kawa | kawę | kawka
🍵 herbata | herbatę | herbatka
⚽ piłka nożna | gol | mecz | futbol
🏀 koszykówka
🎾 tenis
🏃 bieganie | biegać | maraton
🏋️ siłownia | na siłowni | trening
🏆 wygraliśmy | zwycięstwo | mistrz | puchar
🎵 muzyka | piosenka | piosenkę
🎤 śpiewać | karaoke | koncert
🎸 gitara | gitarę
🎬 film | kino | serial
📚 książka | książkę | książki | czytać
✈️ samolot | lot | lotnisko
🚆 pociąg | pociągiem | dworzec
🚗 samochód | autem | auto
🧳 walizka | podróż | wyjazd
🏠 dom | w domu | do domu
🏢 praca | w pracy | biuro
📱 telefon | komórka | smartfon
💻 laptop | komputer
🔋 bateria | ładowarka | rozładowany
🔑 klucze | klucz
💰 pieniądze | kasa | wypłata
📷 zdjęcie | zdjęcia | aparat
""",
    "sv": """
😂 haha | hahaha | lol | så roligt | skrattar ihjäl mig
😊 glad | lycklig | så glad
😍 underbar | vacker | förälskad | så fint
🥰 jag älskar dig | söt | gullig | så gulligt
😘 puss | pussar | kram och puss
😋 gott | jättegott | smaskigt | mums
🤔 hmm | vet inte | konstigt | jag funderar
😴 sova | sömnig | god natt | tupplur
😷 sjuk | förkyld | influensa | feber
🥵 varmt | så varmt | värmebölja | hett
🥶 kallt | så kallt | iskallt | fryser
😱 rädd | läskigt | åh nej | hjälp
😢 ledsen | så ledsen | tråkigt | synd
😭 gråter | tårar
😫 trött | så trött | slut | utmattad | stressad
😡 arg | sur | förbannad | irriterad
🥳 fest | festa | kalas | party
🤗 kram | kramar | stor kram
❤️ kärlek | älskling | hjärtat
💔 krossat hjärta | gjort slut
👍 okej | ok | bra | toppen | absolut
👏 bravo | snyggt | applåder | bra jobbat
🙏 tack | tack så mycket | snälla | tusen tack
💪 stark | styrka | du fixar det | kämpa
👋 hej | hallå | tjena | hej då | vi ses | god morgon
🤞 lycka till | håller tummarna
🎉 grattis | gratulerar | hurra
🎂 grattis på födelsedagen | födelsedag | ha en fin dag
🎄 god jul | jul | julgran | julafton
🎆 gott nytt år | nyår | fyrverkerier | nyårsafton
🎁 present | presenter | julklapp
🐶 hund | hundar | valp | vovve
🐱 katt | katter | kattunge | kisse
🐰 kanin | kaniner | hare
🌹 ros | rosor | röd ros
🌸 blommor | vår | blomma
☀️ sol | soligt | fint väder | solsken
🌙 måne | natt | på natten
🌧️ regn | det regnar | regnigt
❄️ snö | det snöar | snöflingor
⛈️ åska | storm | oväder
🌈 regnbåge
🔥 eld | grymt | sjukt bra | fett
🏖️ strand | semester | till havet | sommar
🏔️ fjällen | berg | vandring
🍕 pizza | pizzor
🍝 pasta | spagetti
🍔 hamburgare | burgare
🍰 tårta | kaka | fika | kanelbulle
🍫 choklad
🍦 glass | en glass
🍞 bröd | smörgås | macka
🍷 vin | rödvin | ett glas vin
🍺 öl | en öl | skål
☕ kaffe | en kopp kaffe
🍵 te | en kopp te
⚽ fotboll | mål | matchen
🏀 basket
🎾 tennis
🏃 springa | löpning | maraton
🏋️ gymmet | träna | träning
🏆 vi vann | vinst | mästare | pokal
🎵 musik | låt | låtar
🎤 sjunga | karaoke | sångare | konsert
🎸 gitarr | rock
🎬 film | bio | serie
📚 bok | böcker | läsa
✈️ flygplan | flyga | flyg | flygplats
🚆 tåg | med tåg | station
🚗 bil | med bil | köra bil
🧳 resväska | resa | packa
🏠 hemma | hus | hem
🏢 jobbet | jobb | kontor
📱 mobil | telefon | mobilen
💻 dator | laptop
🔋 batteri | laddare | ladda
🔑 nycklar | nyckel
💰 pengar | lön | stålar
📷 foto | bilder | kamera
""",
    "tr": """
😂 hahaha | jsjsjs | kahkaha | çok komik | gülmekten öldüm | koptum
😊 mutlu | mutluyum | sevinçli | çok mutluyum
😍 harika | çok güzel | aşık oldum | muhteşem
🥰 seni seviyorum | tatlı | çok tatlı | sevimli
😘 öpücük | öptüm | öpüyorum | muck
😋 lezzetli | çok lezzetli | nefis | enfes
🤔 hmm | bilmem | düşünüyorum | garip
😴 uyku | uyumak | uykum var | iyi geceler | uykulu
😷 hasta | hastayım | grip | nezle | ateş
🥵 sıcak | çok sıcak | sıcaktan öldüm | bunaltıcı
🥶 soğuk | çok soğuk | dondum | buz gibi
😱 korkunç | korktum | eyvah | imdat
😢 üzgün | üzgünüm | çok üzüldüm | yazık
😭 ağlıyorum | gözyaşı
😫 yorgun | çok yorgunum | bittim | yoruldum
😡 sinirli | kızgın | sinir oldum | öfkeli
🥳 parti | kutlama | eğlence
🤗 sarılmak | sarıl | kucaklama
❤️ aşk | aşkım | canım | sevgilim
💔 kırık kalp | ayrıldık
👍 tamam | olur | süper | güzel | peki
👏 bravo | aferin | alkış | helal
🙏 teşekkürler | teşekkür ederim | sağ ol | lütfen
💪 güç | güçlü | yaparsın | başaracaksın
👋 merhaba | selam | görüşürüz | hoşça kal | günaydın
🤞 bol şans | iyi şanslar
🎉 tebrikler | tebrik ederim | yaşasın
🎂 iyi ki doğdun | doğum günün kutlu olsun | doğum günü
🎄 mutlu noeller | noel | yılbaşı ağacı
🎆 mutlu yıllar | yeni yıl | yılbaşı | havai fişek
🎁 hediye | hediyeler
🐶 köpek | köpekler | köpekçik | yavru köpek
🐱 kedi | kediler | kedicik | pisi
🐰 tavşan | tavşanlar
🌹 gül | güller | kırmızı gül
🌸 çiçekler | bahar | çiçek
☀️ güneş | güneşli | hava güzel | güzel hava
🌙 ay | gece | geceleri
🌧️ yağmur | yağmur yağıyor | yağmurlu
❄️ kar | kar yağıyor | kar tanesi
⛈️ fırtına | gök gürültüsü
🌈 gökkuşağı
🔥 ateş | efsane | harika ötesi | çok iyi
🏖️ plaj | tatil | deniz | yaz
🏔️ dağ | dağlar | yürüyüş
🍕 pizza | pizzalar
🍝 makarna | spagetti
🍔 hamburger | burger
🍰 pasta | tatlı | kek
🍫 çikolata
🍦 dondurma
🥙 döner | kebap | lahmacun
🍞 ekmek | simit
🍷 şarap | bir kadeh şarap
🍺 bira | biralar | şerefe
☕ kahve | türk kahvesi | bir kahve
🍵 çay | bir çay | çay içelim
⚽ futbol | gol | maç | futbol maçı
🏀 basketbol
🎾 tenis
🏃 koşu | koşmak | maraton
🏋️ spor salonu | antrenman | spor
🏆 kazandık | şampiyon | zafer | kupa
🎵 müzik | şarkı | şarkılar
🎤 şarkı söylemek | karaoke | konser | şarkıcı
🎸 gitar | rock
🎬 film | sinema | dizi
📚 kitap | kitaplar | okumak
✈️ uçak | uçuş | havalimanı
🚆 tren | trenle | istasyon
🚗 araba | arabayla
🧳 bavul | valiz | seyahat | yolculuk
🏠 ev | evde | eve
🏢 iş | işte | ofis
📱 telefon | cep telefonu | telefonum
💻 bilgisayar | laptop
🔋 şarj | pil | şarjım bitti
🔑 anahtar | anahtarlar
💰 para | maaş
📷 fotoğraf | fotoğraflar | kamera
""",
    "ja": """
😂 笑 | ｗｗｗ | www | 草 | 爆笑 | ウケる | めっちゃ笑った | おもしろい
😊 嬉しい | うれしい | 幸せ | しあわせ | 楽しい
😍 きれい | 綺麗 | 素敵 | かっこいい | 一目惚れ
🥰 大好き | 愛してる | かわいい | 可愛い | かわいすぎ
😘 ちゅ | キス | ちゅー
😋 おいしい | 美味しい | うまい | うまっ | いただきます
🤔 うーん | なんだろう | 考え中 | 不思議
😴 眠い | ねむい | おやすみ | 寝る | 昼寝
😷 風邪 | 熱がある | 体調悪い | 病気
🥵 暑い | あつい | 暑すぎ | 猛暑
🥶 寒い | さむい | 寒すぎ | 凍える
😱 こわい | 怖い | やばい | ぎゃー
😢 悲しい | かなしい | 残念 | さみしい | 寂しい
😭 泣く | 泣いた | 涙
😫 疲れた | つかれた | しんどい | だるい
😡 ムカつく | むかつく | 怒ってる | イライラ
🥳 パーティー | お祝い | 飲み会
🤗 ハグ | ぎゅー
❤️ 愛 | 好き | ラブ
💔 失恋 | 振られた | 別れた
👍 いいね | オッケー | OK | 了解 | りょ | 大丈夫
👏 すごい | さすが | 拍手 | お疲れ様
🙏 ありがとう | ありがとうございます | お願いします | よろしく | よろしくお願いします
💪 がんばって | 頑張る | ファイト | 筋トレ
👋 こんにちは | やあ | またね | バイバイ | おはよう
🤞 幸運を | うまくいきますように
🎉 おめでとう | おめでとうございます | やったー
🎂 誕生日おめでとう | お誕生日 | 誕生日 | ハッピーバースデー
🎄 メリークリスマス | クリスマス | ツリー
🎆 あけましておめでとう | 新年 | 花火 | お正月
🎁 プレゼント | お土産
🐶 犬 | いぬ | ワンちゃん | 子犬 | わんこ
🐱 猫 | ねこ | ネコ | 子猫 | にゃんこ
🐰 うさぎ | ウサギ
🌹 バラ | ばら | 薔薇
🌸 桜 | さくら | お花見 | 花
☀️ 晴れ | いい天気 | 太陽 | 晴れた
🌙 月 | 夜 | 今夜
🌧️ 雨 | 雨が降ってる | 雨だ | 大雨
❄️ 雪 | 雪が降ってる
⛈️ 嵐 | 雷
🌈 虹
🔥 火 | 最高 | 神 | アツい
🏖️ 海 | ビーチ | 夏休み | 海に行く
🏔️ 山 | 登山 | 富士山
🍕 ピザ
🍝 パスタ | スパゲッティ
🍔 ハンバーガー | マック
🍰 ケーキ | スイーツ
🍫 チョコ | チョコレート
🍦 アイス | ソフトクリーム
🍣 寿司 | すし | お寿司
🍜 ラーメン | うどん | そば
🍚 ご飯 | ごはん | おにぎり
🍺 ビール | 生ビール | 乾杯 | 飲みたい
🍷 ワイン | 赤ワイン
☕ コーヒー | カフェ
🍵 お茶 | 緑茶 | 抹茶
⚽ サッカー | ゴール | 試合
⚾ 野球
🏀 バスケ
🏃 ランニング | マラソン | 走る
🏋️ ジム | 筋肉 | トレーニング
🏆 優勝 | 勝った | 勝利
🎵 音楽 | 歌 | 曲 | 新曲
🎤 カラオケ | 歌う | ライブ | コンサート
🎸 ギター | ロック
🎬 映画 | ドラマ
📚 本 | 読書 | 漫画
✈️ 飛行機 | フライト | 空港
🚆 電車 | 新幹線 | 駅
🚗 車 | ドライブ
🧳 旅行 | スーツケース | 旅
🏠 家 | うち | 帰宅
🏢 仕事 | 会社 | 残業
📱 スマホ | 携帯 | 電話
💻 パソコン | ノートパソコン | PC
🔋 充電 | バッテリー
🔑 鍵 | かぎ
💰 お金 | 給料
📷 写真 | カメラ
""",
    "zh": """
😂 哈哈哈 | 哈哈 | 笑死 | 笑死我了 | 太好笑了
😊 开心 | 高兴 | 快乐 | 幸福
😍 好美 | 漂亮 | 好帅 | 心动
🥰 我爱你 | 可爱 | 好可爱 | 喜欢你
😘 亲亲 | 么么哒 | 亲一个
😋 好吃 | 真好吃 | 美味 | 馋
🤔 嗯 | 想想 | 奇怪 | 为什么
😴 睡觉 | 困 | 好困 | 晚安 | 午睡
😷 生病 | 感冒 | 发烧 | 不舒服
🥵 热 | 好热 | 太热了 | 热死了
🥶 冷 | 好冷 | 太冷了 | 冻死了
😱 可怕 | 吓死 | 好可怕 | 天哪
😢 难过 | 伤心 | 好难过 | 可惜
😭 哭了 | 哭 | 眼泪
😫 累 | 好累 | 累死了 | 压力大
😡 生气 | 气死了 | 烦 | 好烦
🥳 派对 | 聚会 | 庆祝
🤗 抱抱 | 拥抱
❤️ 爱 | 亲爱的 | 宝贝
💔 心碎 | 分手 | 失恋
👍 好的 | 好 | 没问题 | 赞 | 可以
👏 厉害 | 棒 | 鼓掌 | 太棒了
🙏 谢谢 | 谢谢你 | 多谢 | 拜托 | 请
💪 加油 | 坚强 | 健身
👋 你好 | 嗨 | 再见 | 拜拜 | 早上好
🤞 祝你好运 | 好运
🎉 恭喜 | 恭喜恭喜 | 祝贺
🎂 生日快乐 | 生日 | 过生日
🎄 圣诞快乐 | 圣诞节 | 圣诞树
🎆 新年快乐 | 新年 | 烟花 | 过年
🧧 红包 | 春节 | 恭喜发财
🎁 礼物 | 送礼物
🐶 狗 | 小狗 | 狗狗 | 我的狗
🐱 猫 | 小猫 | 猫咪 | 喵
🐰 兔子 | 小兔子
🌹 玫瑰 | 玫瑰花
🌸 樱花 | 花 | 春天
☀️ 晴天 | 太阳 | 天气好 | 阳光
🌙 月亮 | 晚上 | 夜晚
🌧️ 下雨 | 雨 | 下雨了 | 大雨
❄️ 下雪 | 雪 | 下雪了
⛈️ 台风 | 暴风雨 | 打雷
🌈 彩虹
🔥 火 | 太牛了 | 火了 | 绝了
🏖️ 海边 | 沙滩 | 度假 | 放假
🏔️ 爬山 | 山 | 登山
🍕 披萨 | 比萨
🍝 意大利面 | 意面
🍔 汉堡 | 汉堡包
🍰 蛋糕 | 甜点
🍫 巧克力
🍦 冰淇淋 | 雪糕
🍜 面条 | 拉面 | 吃面
🍚 米饭 | 饭 | 吃饭
🥟 饺子 | 包子
🍺 啤酒 | 干杯 | 喝酒
🍷 红酒 | 葡萄酒
☕ 咖啡 | 喝咖啡
🍵 茶 | 喝茶 | 绿茶
⚽ 足球 | 进球 | 比赛 | 踢球
🏀 篮球 | 打篮球
🏃 跑步 | 马拉松
🏋️ 健身房 | 锻炼 | 运动
🏆 赢了 | 冠军 | 胜利
🎵 音乐 | 歌 | 新歌 | 听歌
🎤 唱歌 | 卡拉ok | 演唱会 | 歌手
🎸 吉他 | 摇滚
🎬 电影 | 看电影 | 电视剧
📚 书 | 看书 | 读书
✈️ 飞机 | 航班 | 机场 | 坐飞机
🚆 火车 | 高铁 | 地铁
🚗 汽车 | 开车 | 车
🧳 旅行 | 旅游 | 行李箱 | 出差
🏠 家 | 回家 | 在家
🏢 上班 | 工作 | 公司 | 加班
📱 手机 | 电话 | 微信
💻 电脑 | 笔记本电脑
🔋 电池 | 充电 | 没电了
🔑 钥匙 | 我的钥匙
💰 钱 | 工资 | 发财
📷 照片 | 拍照 | 相机
""",
    "ko": """
😂 ㅋㅋㅋ | ㅋㅋㅋㅋ | ㅋㅋ | ㅎㅎㅎ | 웃겨 | 개웃겨 | 빵터졌어
😊 행복해 | 기뻐 | 좋아 | 신나
😍 예쁘다 | 멋있어 | 반했어 | 너무 예뻐
🥰 사랑해 | 귀여워 | 너무 귀여워 | 보고 싶어 | 보고싶어
😘 뽀뽀 | 키스 | 쪽
😋 맛있어 | 맛있다 | 존맛 | 냠냠
🤔 음 | 글쎄 | 생각 중 | 이상하다
😴 졸려 | 잘자 | 자야지 | 낮잠 | 피곤해서 자
😷 아파 | 감기 | 열나 | 몸살
🥵 더워 | 너무 더워 | 덥다 | 폭염
🥶 추워 | 너무 추워 | 춥다 | 얼어 죽겠어
😱 무서워 | 헐 | 대박 | 깜짝이야
😢 슬퍼 | 우울해 | 속상해 | 아쉽다
😭 울어 | ㅠㅠ | ㅜㅜ | 눈물
😫 피곤해 | 힘들어 | 지쳤어 | 스트레스
😡 화나 | 짜증나 | 열받아
🥳 파티 | 축하 파티 | 놀자
🤗 안아줘 | 포옹 | 허그
❤️ 사랑 | 자기야 | 내 사랑
💔 이별 | 헤어졌어 | 상처
👍 좋아요 | 오케이 | 알겠어 | 콜 | 굿
👏 대단해 | 잘했어 | 박수 | 짱
🙏 고마워 | 감사합니다 | 고맙습니다 | 부탁해 | 제발
💪 화이팅 | 파이팅 | 힘내 | 운동
👋 안녕 | 안녕하세요 | 잘가 | 또 봐 | 좋은 아침
🤞 행운을 빌어 | 잘 되길
🎉 축하해 | 축하합니다 | 대박이다
🎂 생일 축하해 | 생일 | 생축 | 생일 축하합니다
🎄 메리 크리스마스 | 크리스마스 | 트리
🎆 새해 복 많이 받으세요 | 새해 | 불꽃놀이 | 설날
🎁 선물 | 선물 받았어
🐶 강아지 | 멍멍이 | 댕댕이
🐱 고양이 | 냥이 | 야옹
🐰 토끼
🌹 장미 | 장미꽃
🌸 벚꽃 | 꽃 | 봄
☀️ 맑음 | 햇빛 | 날씨 좋다 | 해
🌙 달 | 밤 | 오늘 밤
🌧️ 비 | 비 온다 | 비가 와 | 장마
❄️ 눈 | 눈 온다 | 눈이 와
⛈️ 태풍 | 천둥 | 폭풍
🌈 무지개
🔥 불 | 대박 | 미쳤다 | 쩐다
🏖️ 바다 | 해변 | 휴가 | 여름 휴가
🏔️ 산 | 등산
🍕 피자
🍝 파스타 | 스파게티
🍔 햄버거 | 버거
🍰 케이크 | 디저트
🍫 초콜릿
🍦 아이스크림
🍗 치킨 | 닭
🍜 라면 | 국수 | 짜장면
🍚 밥 | 밥 먹자 | 김밥
🍺 맥주 | 술 | 소주 | 한잔 | 건배
🍷 와인
☕ 커피 | 아메리카노 | 카페
🍵 차 | 녹차
⚽ 축구 | 골 | 경기
⚾ 야구
🏀 농구
🏃 달리기 | 마라톤 | 조깅
🏋️ 헬스 | 헬스장 | 운동하자
🏆 이겼다 | 우승 | 승리
🎵 음악 | 노래 | 신곡
🎤 노래방 | 노래하다 | 콘서트 | 가수
🎸 기타 | 락
🎬 영화 | 드라마 | 영화 보자
📚 책 | 독서 | 공부
✈️ 비행기 | 공항 | 여행 가자
🚆 기차 | 지하철 | 케이티엑스
🚗 차 타고 | 자동차 | 드라이브
🧳 여행 | 캐리어 | 짐
🏠 집 | 집에 가 | 우리 집
🏢 회사 | 출근 | 야근
📱 핸드폰 | 폰 | 휴대폰
💻 컴퓨터 | 노트북
🔋 배터리 | 충전 | 배터리 없어
🔑 열쇠 | 키
💰 돈 | 월급
📷 사진 | 카메라 | 셀카
""",
}
# fmt: on


def everyday_words(lang: str) -> dict[str, list[str]]:
    """emoji -> its everyday words in `lang`, first word first; empty for English (see lexicon.EVERYDAY)."""
    table: dict[str, list[str]] = {}
    for line in _WORDS.get(lang, "").strip().splitlines():
        char, _, words = line.partition(" ")
        table[char] = [word.strip() for word in words.split("|") if word.strip()]
    return table
